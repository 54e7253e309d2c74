"""TFDS builder: prepare the synthetic KITTI tree as records and read it back."""
import os
import subprocess
import sys

import numpy as np

from packnet_jax.data import config as config_lib
from packnet_jax.data import kitti
from packnet_jax.data import tfds_builders

TOOLS = os.path.join(os.path.dirname(__file__), '..', 'tools')


def test_build_and_read_back_synthetic(tmp_path):
  raw = tmp_path / 'raw'
  subprocess.run([sys.executable, os.path.join(TOOLS, 'make_synthetic_kitti.py'), '--output', str(raw),
                  '--frames', '6', '--height', '32', '--width', '96'], check=True)
  builder = tfds_builders.prepare('KITTI', str(raw), str(tmp_path / 'tfds'), config='synthetic')
  assert builder.info.splits['train'].num_examples == 2  # frames 1 and 3 have both neighbours
  prepared = tfds_builders.PreparedReader('KITTI', str(tmp_path / 'tfds'), 'train')
  tree = kitti.KITTIReader(str(raw), 'splits/train.txt', depth_type='velodyne', with_pose=True,
                           back_context=1, forward_context=1)
  assert len(prepared) == len(tree)
  for i in range(len(tree)):
    a, b = prepared.load(i), tree.load(i)
    assert a['filename'] == b['filename']
    np.testing.assert_array_equal(np.asarray(a['rgb']), np.asarray(b['rgb']))
    for ca, cb in zip(a['rgb_context'], b['rgb_context']):
      np.testing.assert_array_equal(np.asarray(ca), np.asarray(cb))
    for key in ('intrinsics', 'depth', 'pose'):
      np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(np.stack(a['pose_context']), np.stack(b['pose_context']))
  # The training pipeline reads the records like the raw tree.
  cfg = {'dataset': 'KITTI', 'path': str(raw), 'split': 'train', 'image_shape': (32, 96),
         'tfds_data_dir': str(tmp_path / 'tfds'), 'tfds_config': 'synthetic'}
  it = config_lib.make_train_iterator(cfg, batch_size=1, num_devices=2, process_index=0, process_count=1)
  batch = next(it)
  assert batch['rgb'].shape == (2, 1, 32, 96, 3) and batch['depth'].shape == (2, 1, 32, 96, 1)
