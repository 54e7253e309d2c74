"""Input pipeline at real size: records at training resolution, one decode per frame, config keys.

No timing here (tools/benchmark.py data measures speed); these tests pin what
the fast paths must keep: the same numbers as the reference path.
"""
import shutil

import numpy as np
import pytest
from PIL import Image

from tensorflow_datasets.core.features import tensor_feature

from lib.fixtures import FIXTURES
import packnet_jax.data as data
from packnet_jax.data import allocators
from packnet_jax.data import jitter
from packnet_jax.data import kitti
from packnet_jax.data import pipeline
from packnet_jax.data import tfds_builders
from packnet_jax.data import transforms

ROOT = str(FIXTURES / 'kitti_synth')
RAW = {'dataset': 'KITTI', 'path': ROOT, 'split': 'split.txt', 'depth_type': 'velodyne', 'with_pose': True,
       'back_context': 1, 'forward_context': 1, 'image_shape': (30, 96), 'jittering': (0.2, 0.2, 0.2, 0.05)}
CROP = (4, 50, 8, 180)  # (top, height, left, width) of the 60x200 frames


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  """kitti_synth's split as records at 30x96: plain, and cropped first."""
  out = tmp_path_factory.mktemp('tfds')
  plain = tfds_builders.prepare('KITTI', ROOT, str(out), config='synthetic', splits={'train': 'split.txt'},
                                image_shape=(30, 96))
  cropped = tfds_builders.prepare('KITTI', ROOT, str(out), config='synthetic', splits={'train': 'split.txt'},
                                  image_shape=(30, 96), crop_borders=CROP, name='synthetic_crop_30x96')
  assert plain.builder_config.name == 'synthetic_30x96'  # renamed: never the full-size records' folder
  return str(out), plain, cropped


def _assert_samples_equal(a, b):
  assert sorted(a) == sorted(b)
  for key in a:
    if isinstance(a[key], str):
      assert a[key] == b[key]
    else:
      assert a[key].dtype == b[key].dtype, key
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize('crop', [(), CROP])
def test_training_resolution_records_equal_raw_reading(records, crop):
  data_dir, _, _ = records
  name = 'synthetic_crop_30x96' if crop else 'synthetic_30x96'
  raw_cfg = dict(RAW, crop_train_borders=crop)
  raw = data.build_source(raw_cfg, 'train', seed=3)
  # The split file in the config is not a TFDS split: the records' 'train' split is used.
  prepared = data.build_source(dict(raw_cfg, tfds_data_dir=data_dir, tfds_config=name), 'train', seed=3)
  assert isinstance(prepared.reader, tfds_builders.PreparedReader)
  assert prepared.reader.prepared_transform == {'image_shape': (30, 96), 'crop_borders': crop}
  assert prepared.crop_train_borders == ()  # cropped once, when the records were written
  assert len(prepared) == len(raw) == 4
  for index, epoch in ((0, 0), (1, 0), (2, 5), (3, 1)):
    # Same seed, index and epoch: same jitter, and every value identical.
    _assert_samples_equal(prepared(index, epoch), raw(index, epoch))
  stored = prepared.reader.load(0)
  assert np.asarray(stored['rgb']).shape == (30, 96, 3) and stored['depth'].shape == (30, 96, 1)


def test_training_resolution_records_reject_other_settings(records):
  data_dir, _, _ = records
  cfg = dict(RAW, tfds_data_dir=data_dir, tfds_config='synthetic_30x96')
  with pytest.raises(ValueError, match=r'image_shape: the records in .* were prepared at \(30, 96\), got \(60, 192\)'):
    data.build_source(dict(cfg, image_shape=(60, 192)), 'train')
  with pytest.raises(ValueError, match=r'crop_train_borders: the records .* were cropped with \(\), got \(4, 50'):
    data.build_source(dict(cfg, crop_train_borders=CROP), 'train')
  with pytest.raises(ValueError, match=r"have splits \['train'\], got 'validation'"):
    data.build_source(dict(cfg, split='validation'), 'validation')
  with pytest.raises(ValueError, match="tfds_config: no records for config 'nope'"):
    data.build_source(dict(cfg, tfds_config='nope'), 'train')
  with pytest.raises(ValueError, match='tfds_data_dir: prepared data not found: /no/such'):
    data.build_source(dict(cfg, tfds_data_dir='/no/such'), 'train')


def test_tfds_keys_reach_the_reader_from_the_default_config(records):
  import configs.default as default  # pylint: disable=import-outside-toplevel
  data_dir, _, _ = records
  config = default.get_config()
  train = config.datasets.train
  train.dataset, train.path, train.split, train.depth_type = 'KITTI', ROOT, 'split.txt', 'velodyne'
  train.tfds_data_dir, train.tfds_config = data_dir, 'synthetic_30x96'
  config.datasets.augmentation.image_shape = (30, 96)
  cfg = dict(train.to_dict(), **config.datasets.augmentation.to_dict())
  source = data.build_source(cfg, 'train')
  assert isinstance(source.reader, tfds_builders.PreparedReader) and len(source) == 4
  assert source.reader.prepared_transform['image_shape'] == (30, 96)
  # The defaults of the keys the readers take mean "reader default".
  assert train.to_dict()['on_error'] == 'raise' and tuple(train.intrinsics) == ()
  assert config.datasets.train.shuffle and not config.datasets.validation.shuffle
  with pytest.raises(ValueError, match="on_error: expected 'raise' or 'skip', got 'ignore'"):
    data.build_reader(dict(cfg, tfds_data_dir='', on_error='ignore'))


def test_shuffle_false_gives_the_split_order():
  cfg = dict(RAW, shuffle=False)
  it = data.make_train_iterator(cfg, batch_size=1, num_devices=2, seed=2, process_index=0, process_count=1)
  assert it.num_samples == 4 and it.steps_per_epoch == 2
  assert not hasattr(it, 'epoch') and not hasattr(it, 'step')
  order = [next(it)['idx'].ravel().tolist() for _ in range(4)]
  assert order == [[0, 1], [2, 3], [0, 1], [2, 3]]
  # The default (the config's shuffle=True) permutes; an explicit argument wins over the key.
  expected = np.random.default_rng([2, 0]).permutation(4).tolist()
  assert expected != [0, 1, 2, 3]
  for kwargs in ({'cfg': RAW}, {'cfg': cfg, 'shuffle': True}):
    it = data.make_train_iterator(kwargs.pop('cfg'), batch_size=1, num_devices=2, seed=2, process_index=0,
                                  process_count=1, **kwargs)
    assert next(it)['idx'].ravel().tolist() + next(it)['idx'].ravel().tolist() == expected


def test_train_iterator_takes_a_built_source(monkeypatch):
  source = data.build_source(dict(RAW, shuffle=False), 'train', seed=0)
  monkeypatch.setattr(data.config, 'build_source', lambda *a, **k: pytest.fail('split scanned twice'))
  it = data.make_train_iterator(dict(RAW, shuffle=False), batch_size=2, num_devices=1, source=source,
                                process_index=0, process_count=1)
  assert it.num_samples == 4 and it.steps_per_epoch == 2
  np.testing.assert_array_equal(next(it)['idx'], [[0, 1]])


def test_pipeline_batches_equal_the_float_samples():
  """Images travel as uint8 and become float32 x/255 after batching: the source's exact numbers."""
  source = data.build_source(RAW, 'train', seed=5)
  ds = pipeline.make_train_dataset(source, per_device_batch=2, num_devices=1, seed=5, shuffle=True,
                                   process_index=0, process_count=1, threads=1)
  batch = next(ds.as_numpy_iterator())
  for b in range(2):
    sample = source(int(batch['idx'][0, b]), 0)
    for key in ('rgb_original', 'rgb_context_original'):
      assert batch[key].dtype == np.float32
      np.testing.assert_array_equal(batch[key][0, b], sample[key], err_msg=key)
    for key in jitter.PARAM_KEYS:  # the train step jitters: its parameters travel with their dtypes
      assert batch[key].dtype == sample[key].dtype, key
      np.testing.assert_array_equal(batch[key][0, b], sample[key], err_msg=key)
  assert 'rgb' not in batch and 'rgb_context' not in batch  # not jittered on the host
  assert Image.core.get_blocks_max() >= allocators.PILLOW_BLOCKS  # buffer reuse is on


@pytest.fixture
def decode_counter(monkeypatch):
  """Counts image decodes: PIL creates one decoder per decoded file ('raw' unpacks arrays: not a decode)."""
  import PIL.Image  # pylint: disable=import-outside-toplevel
  calls = []
  real = PIL.Image._getdecoder

  def counting(mode, decoder_name, *args, **kwargs):
    if decoder_name != 'raw':
      calls.append(decoder_name)
    return real(mode, decoder_name, *args, **kwargs)
  monkeypatch.setattr(PIL.Image, '_getdecoder', counting)
  return calls


def test_each_frame_is_decoded_once_per_sample(decode_counter, records, tmp_path, monkeypatch):
  # Raw tree, train transform with jitter: target + 2 contexts = 3 decodes.
  source = data.build_source(RAW, 'train')
  decode_counter.clear()
  source(1, 0)
  assert decode_counter == ['zip'] * 3
  # Records at training resolution: no image decode; one inflate each for rgb, the context stack, depth.
  prepared = data.build_source(dict(RAW, tfds_data_dir=records[0], tfds_config='synthetic_30x96'), 'train')
  inflated = []
  real_decompress = tensor_feature.zlib.decompress
  with monkeypatch.context() as patch:
    patch.setattr(tensor_feature.zlib, 'decompress', lambda b: inflated.append(len(b)) or real_decompress(b))
    decode_counter.clear()
    prepared(2, 0)
  assert decode_counter == [] and len(inflated) == 3
  # Velodyne projected on the fly needs the frame size: read from the header, not a 4th decode.
  root = tmp_path / 'kitti'
  shutil.copytree(ROOT, root)
  drive = root / '2011_09_26' / '2011_09_26_drive_0001_sync'
  (drive / 'proj_depth' / 'velodyne' / 'image_02' / '0000000001.npz').unlink()
  (drive / 'velodyne_points' / 'data').mkdir(parents=True)
  points = np.array([[10.0, 0.5, -0.2, 1.0], [8.0, -1.0, 0.3, 1.0]], np.float32)
  points.tofile(drive / 'velodyne_points' / 'data' / '0000000001.bin')
  reader = kitti.KITTIReader(str(root), 'split.txt', depth_type='velodyne', back_context=1, forward_context=1,
                             project_velodyne=True)
  decode_counter.clear()
  sample = reader.load(1)
  assert decode_counter == ['zip'] * 3
  assert sample['depth'].shape == (60, 200, 1) and (sample['depth'] > 0).sum() >= 1


def test_benchmark_pipeline_reports_per_core_figures():
  result = data.benchmark_pipeline(RAW, batch_size=2, num_devices=1, num_batches=2, warmup=1, threads=1)
  assert result['samples'] == 4 and result['num_samples'] == 4 and result['threads'] == 1
  assert result['samples_per_cpu_s'] == pytest.approx(result['samples'] / result['cpu_seconds'])
  assert result['samples_per_s'] == pytest.approx(result['samples'] / result['seconds'])
