"""KITTI reader: reference parity on kitti_synth, errors, velodyne projection, generator."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lib.fixtures import FIXTURES, load_npz, nchw_to_nhwc
from lib import noise
from packnet_jax.data import kitti
from packnet_jax.data import kitti_calib
from packnet_jax.data import projection
from packnet_jax.data import transforms

ROOT = str(FIXTURES / 'kitti_synth')
TOOLS = os.path.join(os.path.dirname(__file__), '..', 'tools')


@pytest.fixture(scope='module')
def ref():
  return load_npz('kitti_samples.npz')


def test_train_samples_match_reference(ref):
  reader = kitti.KITTIReader(ROOT, 'split.txt', depth_type='velodyne', with_pose=True,
                             back_context=1, forward_context=1)
  assert len(reader) == 4
  assert reader.context_idxs == [[0, 2], [1, 3], [2, 4], [1, 3]]
  for i in range(4):
    s = transforms.train_transform(reader.load(i), image_shape=(30, 96))
    p = f'train_{i}/'
    assert s['filename'] == f'split_{i:010d}'
    for key in ('rgb', 'rgb_original', 'depth'):
      np.testing.assert_allclose(s[key], nchw_to_nhwc(ref[p + key]), atol=1e-6, rtol=0)
    for c in range(2):
      np.testing.assert_allclose(s['rgb_context'][c], nchw_to_nhwc(ref[p + f'rgb_context_{c}']), atol=1e-6, rtol=0)
      np.testing.assert_allclose(s['rgb_context_original'][c], nchw_to_nhwc(ref[p + f'rgb_context_original_{c}']),
                                 atol=1e-6, rtol=0)
    np.testing.assert_array_equal(s['depth'], nchw_to_nhwc(ref[p + 'depth']))
    np.testing.assert_array_equal(s['intrinsics'], ref[p + 'intrinsics'].astype(np.float32))
    np.testing.assert_array_equal(s['pose'], ref[p + 'pose'])


# pose_context = inverse(pose of the context) @ pose, a float32 4×4 product: its summation order is
# numpy's/BLAS's, not torch's, so it matches the reference to float32 noise (seen: 1 ulp), not bit for bit.
ATOL_POSE_CONTEXT = 1e-6  # f32 noise 2.5e-7 (tools/measure_noise.py --only kitti): 4x


def _train_reader():
  return kitti.KITTIReader(ROOT, 'split.txt', depth_type='velodyne', with_pose=True, back_context=1,
                           forward_context=1)


@noise.parity_check()
def check_pose_context(dtype):
  ref, reader = load_npz('kitti_samples.npz'), _train_reader()
  out = []
  for i in range(4):
    if np.dtype(dtype) == np.float32:  # what the reader returns
      ours = transforms.train_transform(reader.load(i), image_shape=(30, 96))['pose_context']
    else:  # the same product from the same float32 poses, in float64
      path = reader.paths[i]
      files = [kitti._sibling(j, path) for j in reader.context_idxs[i]]  # pylint: disable=protected-access
      ours = [kitti_calib.invert_pose(reader.pose(f).astype(dtype)) @ reader.pose(path).astype(dtype)
              for f in files]
    out += [noise.Comparison(f'train_{i}/pose_context_{c}', ours[c], ref[f'train_{i}/pose_context_{c}'],
                             atol=ATOL_POSE_CONTEXT) for c in range(2)]
  return out


def test_train_pose_context_matches_reference():
  noise.assert_all(check_pose_context(np.float32))


def test_val_samples_match_reference(ref):
  reader = kitti.KITTIReader(ROOT, 'split.txt', depth_type='velodyne')
  assert len(reader) == 6
  for i in (0, 5):
    s = transforms.eval_transform(reader.load(i), image_shape=(30, 96))
    p = f'val_{i}/'
    np.testing.assert_allclose(s['rgb'], nchw_to_nhwc(ref[p + 'rgb']), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(s['intrinsics'], ref[p + 'intrinsics'].astype(np.float32))  # not rescaled
    np.testing.assert_array_equal(s['depth'], nchw_to_nhwc(ref[p + 'depth']))  # native 60×200


def test_raw_groundtruth_png_depth(ref):
  reader = kitti.KITTIReader(ROOT, 'split.txt', depth_type='groundtruth', with_pose=True)
  raw = reader.load(1)
  p = 'raw_groundtruth_1/'
  np.testing.assert_array_equal(np.asarray(raw['rgb']), ref[p + 'rgb'])
  np.testing.assert_array_equal(raw['depth'], ref[p + 'depth'])  # raw: −1 invalid, as the reference
  np.testing.assert_array_equal(raw['intrinsics'], ref[p + 'intrinsics'])
  np.testing.assert_array_equal(raw['pose'], ref[p + 'pose'])
  final = transforms.eval_transform(reader.load(1))
  np.testing.assert_array_equal(final['depth'], np.maximum(ref[p + 'depth'], 0).astype(np.float32))


def _copy_tree(tmp_path):
  root = tmp_path / 'kitti'
  shutil.copytree(ROOT, root)
  return root


def test_clear_errors(tmp_path):
  with pytest.raises(ValueError, match='dataset root not found: /no/such'):
    kitti.KITTIReader('/no/such', 'split.txt')
  root = _copy_tree(tmp_path)
  (root / 'bad.txt').write_text('2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000001.png\n'
                                '2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000099.png\n')
  with pytest.raises(ValueError, match=r'bad.txt:2: image not found: .*0000000099.png'):
    kitti.KITTIReader(str(root), 'bad.txt')
  assert len(kitti.KITTIReader(str(root), 'bad.txt', on_error='skip')) == 1
  img_dir = root / '2011_09_26/2011_09_26_drive_0001_sync/image_02/data'
  data = (img_dir / '0000000001.png').read_bytes()
  (img_dir / '0000000001.png').write_bytes(data[:len(data) // 2])  # truncated
  reader = kitti.KITTIReader(str(root), 'split.txt')
  with pytest.raises(ValueError, match='0000000001.png: cannot decode image'):
    reader.load(1)
  Image.open(img_dir / '0000000002.png').convert('L').save(img_dir / '0000000002.png')
  with pytest.raises(ValueError, match="0000000002.png: expected RGB image, got mode 'L'"):
    reader.load(2)
  (root / '2011_09_26/calib_cam_to_cam.txt').write_text('P_rect_00: 1 2 3\n')
  with pytest.raises(ValueError, match="calib_cam_to_cam.txt: calibration key 'P_rect_02' missing"):
    reader.load(0)


def test_points_to_depth_conventions():
  K = np.array([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]])
  pts = np.array([[0.04, 0.0, 1.0],   # u = 5.4 → round 5, trunc 5
                  [0.06, 0.0, 2.0],   # u = 5.3 at z=2 → same pixel, farther
                  [-0.56, 0.0, 1.0],  # u = −0.6 → round −1 dropped; trunc 0 kept (DGP)
                  [0.0, 0.0, -1.0]])  # behind: dropped
  d = projection.points_to_depth(pts, K, (10, 10), 'round', 'closest')
  assert d[5, 5] == 1.0 and (d > 0).sum() == 1
  d = projection.points_to_depth(pts, K, (10, 10), 'trunc', 'last')
  assert d[5, 5] == 2.0 and d[5, 0] == 1.0 and (d > 0).sum() == 2


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
  out = tmp_path_factory.mktemp('synth')
  subprocess.run([sys.executable, os.path.join(TOOLS, 'make_synthetic_kitti.py'), '--output', str(out),
                  '--frames', '8', '--height', '32', '--width', '96', '--seed', '1'], check=True)
  return out


def test_synthetic_generator_poses_and_velodyne(synth, tmp_path):
  import make_synthetic_kitti as gen
  poses = gen.trajectory(8)
  reader = kitti.KITTIReader(str(synth), 'splits/train.txt', depth_type='velodyne', with_pose=True,
                             back_context=1, forward_context=1)
  assert len(reader) == 4  # frames 1, 3, 5, 6 (0 lacks a backward context; 7 a forward one)
  for i, path in enumerate(reader.paths):
    f = int(os.path.basename(path)[:-4])
    s = reader.load(i)
    np.testing.assert_allclose(s['pose'], np.linalg.inv(poses[0]) @ poses[f], atol=1e-5)
    np.testing.assert_allclose(s['pose_context'][1], np.linalg.inv(poses[f + 1]) @ poses[f], atol=1e-5)
    # Sparse velodyne GT agrees with the dense ground truth where both exist.
    dense = kitti.read_depth(kitti.depth_file(path, 'groundtruth'))[..., 0]
    sparse = s['depth'][..., 0]
    m = sparse > 0
    assert m.sum() > 100
    np.testing.assert_allclose(sparse[m], dense[m], atol=2e-3)
  # Without the npz maps, the reader option projects velodyne_points/*.bin the same way.
  root = tmp_path / 'novelo'
  shutil.copytree(synth, root)
  shutil.rmtree(root / '2011_09_26/2011_09_26_drive_0001_sync/proj_depth/velodyne')
  assert len(kitti.KITTIReader(str(root), 'splits/train.txt', depth_type='velodyne')) == 0
  proj = kitti.KITTIReader(str(root), 'splits/train.txt', depth_type='velodyne', project_velodyne=True)
  plain = kitti.KITTIReader(str(synth), 'splits/train.txt', depth_type='velodyne')
  for i in range(len(plain)):
    np.testing.assert_allclose(proj.load(i)['depth'], plain.load(i)['depth'], atol=1e-5)


def test_synthetic_generator_is_deterministic(synth, tmp_path):
  import make_synthetic_kitti as gen
  gen.generate(str(tmp_path / 'again'), frames=8, height=32, width=96, seed=1)
  rel = '2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000001.png'
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'again' / rel)), np.asarray(Image.open(synth / rel)))
