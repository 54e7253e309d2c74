"""Restricted torch-file reader: zip + legacy formats, refused globals, clear errors."""
import collections
import io
import pickle
import pickletools
import struct
import zipfile

import numpy as np
import pytest

from lib import recipe
from lib import torch_writer
from lib.fixtures import FIXTURES, load_json
from packnet_jax.convert import torch_pickle

POSEONLY = FIXTURES / 'ckpt' / 'selfsup_resnet18_posenet_POSEONLY.ckpt'


def _sample_object():
  base = np.arange(40, dtype=np.float32) * np.float32(0.5) - 3
  return {
      'state_dict': collections.OrderedDict([
          ('conv.weight', np.random.RandomState(0).standard_normal((4, 3, 3, 3)).astype(np.float32)),
          ('bn.num_batches_tracked', np.array(12, np.int64)),
          ('half', np.array([1.5, -2.25, 65504.0], np.float16)),
          ('double', np.array([[1e-300, 2.5]], np.float64)),
          ('mask', np.array([True, False, True])),
          ('bytes', np.arange(7, dtype=np.uint8)),
          ('ints', np.array([-3, 7], np.int32)),
          ('empty', np.zeros((0, 5), np.float32)),
          # Two views of one storage: a transposed (non-contiguous) one and an offset slice.
          ('view_t', torch_writer.StridedTensor(base, 2, (3, 4), (1, 3))),
          ('view_slice', torch_writer.StridedTensor(base, 30, (2, 5), (5, 1))),
      ]),
      'config': {'model': {'depth_net': {'name': 'DepthResNet', 'version': '18'}}, 'shape': (192, 640)},
      'epoch': 3,
  }


def _expected_views():
  base = np.arange(40, dtype=np.float32) * np.float32(0.5) - 3
  return {'view_t': np.lib.stride_tricks.as_strided(base[2:], (3, 4), (4, 12)).copy(),
          'view_slice': base[30:40].reshape(2, 5)}


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_roundtrip_all_dtypes_and_views(tmp_path, fmt):
  obj = _sample_object()
  path = tmp_path / f'sample_{fmt}.ckpt'
  (torch_writer.save_zip if fmt == 'zip' else torch_writer.save_legacy)(obj, path)
  assert zipfile.is_zipfile(path) == (fmt == 'zip')
  loaded = torch_pickle.load(path)
  assert loaded['epoch'] == 3
  assert loaded['config'] == {'model': {'depth_net': {'name': 'DepthResNet', 'version': '18'}},
                              'shape': (192, 640)}
  sd = loaded['state_dict']
  assert isinstance(sd, collections.OrderedDict) and list(sd) == list(obj['state_dict'])
  expected = dict(obj['state_dict'], **_expected_views())
  for key, want in expected.items():
    assert sd[key].dtype == want.dtype and sd[key].shape == want.shape, key
    np.testing.assert_array_equal(sd[key], want, err_msg=key)


def test_poseonly_fixture_matches_recipe_bit_exactly():
  loaded = torch_pickle.load(POSEONLY)
  assert list(loaded) == ['config', 'epoch', 'state_dict', 'optimizer', 'scheduler']
  sd = loaded['state_dict']
  info = load_json('ckpt/ckpt_info.json')
  pose_entries = [(e['key'], e['shape']) for e in info['full_checkpoint']['state_dict']
                  if e['key'].startswith('model.pose_net.')]
  assert [(k, list(v.shape)) for k, v in sd.items()] == pose_entries
  want = recipe.recipe_state_dict([(k[len('model.pose_net.'):], s) for k, s in pose_entries])
  for key, value in sd.items():
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, want[key[len('model.pose_net.'):]], err_msg=key)
  config = loaded['config']
  assert isinstance(config, torch_pickle.CfgNode) and isinstance(config.model, torch_pickle.CfgNode)
  assert config.model.depth_net.name == 'DepthResNet' and config.model.depth_net.version == '18'
  assert tuple(config.datasets.augmentation.image_shape) == (192, 640)
  assert loaded['epoch'] == 0
  assert [g['name'] for g in loaded['optimizer']['param_groups']] == ['Depth', 'Pose']
  assert loaded['scheduler']['step_size'] == 30


def test_torch_written_files_match(tmp_path):
  """Only where torch happens to be installed: files written by torch itself."""
  torch = pytest.importorskip('torch')
  tensors = collections.OrderedDict(a=torch.arange(12, dtype=torch.float32).reshape(3, 4),
                                    b=torch.tensor(5, dtype=torch.int64))
  tensors['t'] = tensors['a'].t()
  for zip_format in (True, False):
    path = tmp_path / f'torch_{zip_format}.pt'
    torch.save({'state_dict': tensors}, path, _use_new_zipfile_serialization=zip_format)
    loaded = torch_pickle.load(path)['state_dict']
    for key, value in tensors.items():
      np.testing.assert_array_equal(loaded[key], value.numpy(), err_msg=key)


def _zip_with_pickle(path, data):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', data)
    z.writestr('archive/version', '3\n')


def _legacy_with_main_pickle(path, data):
  with open(path, 'wb') as f:
    for header in (torch_writer.LEGACY_MAGIC_NUMBER, torch_writer.LEGACY_PROTOCOL_VERSION, {}):
      pickle.dump(header, f, protocol=2)
    f.write(data)
    pickle.dump([], f, protocol=2)


@pytest.mark.parametrize('container', ['zip', 'legacy', 'bare'])
def test_forbidden_global_is_refused_before_running(tmp_path, container):
  marker = tmp_path / 'pwned'
  data = torch_writer.forbidden_pickle(marker)
  path = tmp_path / f'evil_{container}.ckpt'
  if container == 'zip':
    _zip_with_pickle(path, data)
  elif container == 'legacy':
    _legacy_with_main_pickle(path, data)
  else:
    path.write_bytes(data)
  with pytest.raises(ValueError, match=r"checkpoint pickle references forbidden global 'os\.system'") as err:
    torch_pickle.load(path)
  assert str(path) in str(err.value) and '\n' not in str(err.value)
  assert not marker.exists()


def test_storage_type_cannot_be_called(tmp_path):
  buf = io.BytesIO()
  torch_writer._TorchPickler(buf, legacy=False).dump(  # pylint: disable=protected-access
      torch_writer.Reduce(torch_writer.Global('torch', 'FloatStorage'), (3,)))
  path = tmp_path / 'call.ckpt'
  _zip_with_pickle(path, buf.getvalue())
  with pytest.raises(ValueError, match='calls storage type torch.FloatStorage'):
    torch_pickle.load(path)


def test_out_of_bounds_view_is_refused(tmp_path):
  base = np.arange(10, dtype=np.float32)
  path = tmp_path / 'oob.ckpt'
  torch_writer.save_zip({'x': torch_writer.StridedTensor(base, 8, (2, 3), (3, 1))}, path)
  with pytest.raises(ValueError, match='exceeds its storage of 10 elements'):
    torch_pickle.load(path)


def _write(path, data):
  path.write_bytes(data)
  return path


@pytest.mark.parametrize('case, pattern', [
    ('empty', 'file is empty'),
    ('random', r'not a torch checkpoint \(neither a zip archive nor a legacy torch pickle\)'),
    ('zip_no_pkl', 'zip archive has no data.pkl'),
    ('torchscript', 'TorchScript archive'),
    ('plain_pickle', 'legacy magic number missing'),
    ('truncated_legacy', 'corrupt or unsupported torch checkpoint|truncated'),
    ('directory', 'checkpoint file not found'),
    ('missing', 'checkpoint file not found'),
])
def test_bad_files_give_one_line_errors(tmp_path, case, pattern):
  path = tmp_path / f'{case}.ckpt'
  if case == 'empty':
    _write(path, b'')
  elif case == 'random':
    _write(path, b'\x00' + np.random.RandomState(1).bytes(4095))  # 0x80 would start a pickle.
  elif case == 'zip_no_pkl':
    with zipfile.ZipFile(path, 'w') as z:
      z.writestr('archive/version', '3\n')
  elif case == 'torchscript':
    with zipfile.ZipFile(path, 'w') as z:
      z.writestr('model/data.pkl', pickle.dumps({}, protocol=2))
      z.writestr('model/constants.pkl', pickle.dumps((), protocol=2))
  elif case == 'plain_pickle':
    _write(path, pickle.dumps({'a': [1, 2]}, protocol=2))
  elif case == 'truncated_legacy':
    full = tmp_path / 'full.ckpt'
    torch_writer.save_legacy({'w': np.ones((64, 64), np.float32)}, full)
    _write(path, full.read_bytes()[:-100])
  elif case == 'directory':
    path.mkdir()
  with pytest.raises(ValueError, match=pattern) as err:
    torch_pickle.load(path)
  assert '\n' not in str(err.value) and str(path) in str(err.value)


def test_legacy_layout_matches_torch_serialization(tmp_path):
  """The legacy stream: magic, 1001, sys_info, main pickle, keys, then int64 numel + raw bytes."""
  path = tmp_path / 'legacy.ckpt'
  value = np.array([1.0, 2.0, 3.0], np.float32)
  torch_writer.save_legacy({'v': value}, path)
  with open(path, 'rb') as f:
    assert pickle.load(f) == 0x1950A86A20F9469CFC6C
    assert pickle.load(f) == 1001
    assert pickle.load(f)['little_endian'] is True
    for _ in pickletools.genops(f):  # Skip the main pickle without unpickling it.
      pass
    assert pickle.load(f) == ['0']
    (numel,) = struct.unpack('<q', f.read(8))
    assert numel == 3 and f.read() == value.tobytes()
  np.testing.assert_array_equal(torch_pickle.load(path)['v'], value)
