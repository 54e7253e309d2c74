"""Test-only writer of torch.save files (zip and legacy formats), without torch.

Follows torch/serialization.py: numpy arrays are pickled the way torch pickles
tensors (`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
with a persistent-id storage), so the files exercise the same paths as real
checkpoints. `StridedTensor` writes a view of a shared storage.
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_NAMES = {
    np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
    np.dtype(np.float16): 'HalfStorage', np.dtype(np.int64): 'LongStorage',
    np.dtype(np.int32): 'IntStorage', np.dtype(np.uint8): 'ByteStorage',
    np.dtype(np.bool_): 'BoolStorage',
}


class Global:
  """Pickles as the opcode GLOBAL '<module> <name>' (no import needed)."""

  def __init__(self, module, name):
    self.module, self.name = module, name


class Reduce:
  """Pickles as func(*args) with `func` a Global."""

  def __init__(self, func, args):
    self.func, self.args = func, args


class StridedTensor:
  """A tensor view (offset, size, stride) of the 1-D array `storage`."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Storage:

  def __init__(self, array):
    self.array = np.ascontiguousarray(array).reshape(-1)


_REBUILD = Global('torch._utils', '_rebuild_tensor_v2')


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Pure-Python pickler that emits torch's tensor/storage encoding."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, legacy):
    super().__init__(file, protocol=2)
    self.legacy = legacy
    self.storages = {}  # key -> _Storage
    self._keys = {}  # id(_Storage) -> key
    self._wrapped = {}  # id(storage array) -> _Storage, so views share storages

  def persistent_id(self, obj):
    if not isinstance(obj, _Storage):
      return None
    key = self._keys.setdefault(id(obj), str(len(self._keys)))
    self.storages[key] = obj
    pid = ('storage', Global('torch', _STORAGE_NAMES[obj.array.dtype]), key, 'cpu', obj.array.size)
    return pid + (None,) if self.legacy else pid

  def _save_global_marker(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
    self.memoize(obj)

  def _save_reduce_marker(self, obj):
    self.save(obj.func)
    self.save(tuple(obj.args))
    self.write(pickle.REDUCE)

  def _save_array(self, obj):
    c_strides = tuple(int(np.prod(obj.shape[i + 1:])) for i in range(obj.ndim))
    self._save_strided(StridedTensor(obj, 0, obj.shape, c_strides))

  def _save_strided(self, t):
    if id(t.storage) not in self._wrapped:
      self._wrapped[id(t.storage)] = (_Storage(t.storage), t.storage)  # keeps the array alive
    storage = self._wrapped[id(t.storage)][0]
    self._save_reduce_marker(Reduce(
        _REBUILD, (storage, t.offset, tuple(t.size), tuple(t.stride), False, collections.OrderedDict())))

  dispatch[Global] = _save_global_marker
  dispatch[Reduce] = _save_reduce_marker
  dispatch[np.ndarray] = _save_array
  dispatch[StridedTensor] = _save_strided


def save_zip(obj, path, root='archive'):
  """torch >= 1.6 format: <root>/data.pkl + <root>/data/<key> (stored)."""
  buf = io.BytesIO()
  pickler = _TorchPickler(buf, legacy=False)
  pickler.dump(obj)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
    z.writestr(f'{root}/data.pkl', buf.getvalue())
    z.writestr(f'{root}/byteorder', 'little')
    for key in sorted(pickler.storages):
      z.writestr(f'{root}/data/{key}', pickler.storages[key].array.tobytes())
    z.writestr(f'{root}/version', '3\n')


def save_legacy(obj, path):
  """torch <= 1.5 format (torch.serialization._legacy_save)."""
  with open(path, 'wb') as f:
    pickle.dump(LEGACY_MAGIC_NUMBER, f, protocol=2)
    pickle.dump(LEGACY_PROTOCOL_VERSION, f, protocol=2)
    pickle.dump({'protocol_version': LEGACY_PROTOCOL_VERSION, 'little_endian': True,
                 'type_sizes': {'short': 2, 'int': 4, 'long': 8}}, f, protocol=2)
    pickler = _TorchPickler(f, legacy=True)
    pickler.dump(obj)
    keys = sorted(pickler.storages)
    pickle.dump(keys, f, protocol=2)
    for key in keys:
      array = pickler.storages[key].array
      f.write(struct.pack('<q', array.size))
      f.write(array.tobytes())


def forbidden_pickle(marker_path):
  """A protocol-2 pickle that would run os.system('touch <marker>') if trusted."""
  buf = io.BytesIO()
  _TorchPickler(buf, legacy=False).dump(Reduce(Global('os', 'system'), (f'touch {marker_path}',)))
  return buf.getvalue()


def recipe_networks(*fixture_names):
  """{fixture name: recipe state dict (network-level keys)} from net_<name>.json key lists."""
  from lib import recipe  # pylint: disable=import-outside-toplevel
  from lib.fixtures import load_json  # pylint: disable=import-outside-toplevel
  out = {}
  for name in fixture_names:
    entries = [(e['key'], e['shape']) for e in load_json(f'net_{name}.json')['state_dict']]
    out[name] = recipe.recipe_state_dict(entries)
  return out


def recipe_checkpoint(path, depth='DepthResNet18', pose='PoseNet', fmt='legacy', config=None, drop=()):
  """Writes a PackNet-SfM-style .ckpt whose weights follow the docs/reference.md §9 recipe.

  Args:
    path: output file.
    depth, pose: fixture names (net_<name>.json) or None to leave a net out.
    fmt: 'legacy' or 'zip'.
    config: stored config dict (default: DepthResNet '18' + PoseNet at 64×192).
    drop: full keys to leave out (to test missing-key errors).
  """
  if config is None:
    config = {'model': {'name': 'SelfSupModel',
                        'depth_net': {'name': 'DepthResNet', 'version': '18', 'dropout': 0.0},
                        'pose_net': {'name': 'PoseNet', 'version': '', 'dropout': 0.0},
                        'params': {'crop': 'garg', 'min_depth': 0.0, 'max_depth': 80.0}},
              'datasets': {'augmentation': {'image_shape': (64, 192)}}}
  state_dict = collections.OrderedDict()
  for prefix, name in (('model.depth_net.', depth), ('model.pose_net.', pose)):
    if name:
      for key, value in recipe_networks(name)[name].items():
        if prefix + key not in drop:
          state_dict[prefix + key] = value
  obj = {'config': config, 'epoch': 7, 'state_dict': state_dict,
         'optimizer': {'state': {}, 'param_groups': [{'name': 'Depth', 'lr': 2e-4}]}}
  (save_legacy if fmt == 'legacy' else save_zip)(obj, path)
  return path
