"""Reads `torch.save` files without torch, through a restricted unpickler.

Two on-disk formats exist (torch/serialization.py):

* zip (torch >= 1.6): `<root>/data.pkl` is a pickle whose persistent ids are
  `('storage', StorageType, key, location, numel)`; the raw little-endian bytes
  of storage `key` are the member `<root>/data/<key>`.
* legacy (torch <= 1.5): one stream of pickles — magic number, protocol version
  (1001), a sys_info dict, the main pickle (persistent ids
  `('storage', StorageType, root_key, location, numel, view_metadata)`), the
  sorted list of storage keys — followed, for each key, by an int64 element
  count and the raw bytes of that storage.

The unpickler resolves only the globals a PackNet-SfM checkpoint needs (docs/reference.md
§8): OrderedDict, set, the tensor-rebuild helpers, the typed storage classes
and yacs' CfgNode (replaced by the dict subclass `CfgNode` below). Any other
global is refused in `find_class`, i.e. before it can be called. Tensors come
back as numpy arrays (read-only views of a memory map of the file when the
layout allows it; copy what you keep).
"""
import collections
import mmap
import os
import pickle
import struct
import tarfile
import zipfile

import ml_dtypes
import numpy as np

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
_ZIP_LOCAL_HEADER = b'PK\x03\x04'

_STORAGE_DTYPES = {
    'FloatStorage': np.float32,
    'DoubleStorage': np.float64,
    'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
    'UntypedStorage': np.uint8,
}


class ForbiddenGlobalError(ValueError):
  """A pickle referenced a global outside the allow-list."""


class CfgNode(dict):
  """Stand-in for `yacs.config.CfgNode`: a dict with attribute reads.

  yacs pickles its private flags (`__immutable__`, key sets) as instance state;
  they land in `__dict__` and are ignored.
  """

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError:
      raise AttributeError(name) from None


class StorageType:
  """Stand-in for `torch.<X>Storage`: only carries the element dtype."""

  def __init__(self, name):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])

  def __call__(self, *args, **kwargs):
    raise ValueError(f'checkpoint pickle calls storage type torch.{self.name}, which is not supported')

  def __repr__(self):
    return f'StorageType({self.name})'


def _check_ints(name, values):
  values = tuple(values)
  if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
    raise ValueError(f'tensor {name}: expected non-negative ints, got {values!r}')
  return values


def _tensor_view(storage, offset, size, stride):
  """A strided view of a 1-D storage array, bounds-checked before viewing."""
  if not isinstance(storage, np.ndarray) or storage.ndim != 1:
    raise ValueError(f'tensor storage: expected a storage reference, got {type(storage).__name__}')
  (offset,) = _check_ints('storage_offset', (offset,))
  size = _check_ints('size', size)
  stride = _check_ints('stride', stride)
  if len(size) != len(stride):
    raise ValueError(f'tensor: size {size} and stride {stride} differ in length')
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise ValueError(f'tensor: view (offset {offset}, size {size}, stride {stride}) exceeds its storage '
                     f'of {storage.size} elements')
  item = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)
  return view if view.flags.c_contiguous else np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  return _tensor_view(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('__builtin__', 'set'): set,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('yacs.config', 'CfgNode'): CfgNode,
}
_ALLOWED_GLOBALS.update({('torch', name): StorageType(name) for name in _STORAGE_DTYPES})


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler with an allow-list of globals and a pluggable storage loader."""

  def __init__(self, file, path, load_storage=None, skip_tensors=False):
    super().__init__(file, encoding='utf-8')
    self._path = path
    self._load_storage = load_storage
    self._skip_tensors = skip_tensors

  def find_class(self, module, name):
    try:
      value = _ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
      raise ForbiddenGlobalError(
          f"{self._path}: checkpoint pickle references forbidden global '{module}.{name}'") from None
    if self._skip_tensors and value in (_rebuild_tensor, _rebuild_parameter):
      return _skip
    return value

  def persistent_load(self, pid):
    if self._load_storage is None:
      raise pickle.UnpicklingError('unexpected persistent id in a plain pickle')
    if not isinstance(pid, tuple) or len(pid) < 5 or _ascii(pid[0]) != 'storage':
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r:.80}')
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, StorageType):
      raise pickle.UnpicklingError(f'persistent id has no storage type: {storage_type!r:.80}')
    (numel,) = _check_ints('numel', (numel,))
    view = pid[5] if len(pid) > 5 else None
    return self._load_storage(storage_type.dtype, _ascii(key), numel, view)


def _ascii(value):
  return value.decode('ascii') if isinstance(value, bytes) else str(value)


def _skip(*unused):
  return None


def _restricted_load(f, path, load_storage=None, skip_tensors=False):
  return _RestrictedUnpickler(f, path, load_storage, skip_tensors).load()


def load(path):
  """Loads a `torch.save` file (zip or legacy) into numpy arrays and dicts.

  Args:
    path: file written by `torch.save` (e.g. a PackNet-SfM `.ckpt`).

  Returns:
    The unpickled object; tensors are numpy arrays (possibly read-only views).

  Raises:
    ValueError: one line naming `path`: not a file, empty, neither format,
      a corrupt pickle, or a forbidden global ('os.system', ...).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f'{path}: checkpoint file not found (expected a torch .ckpt/.pth file)')
  if os.path.getsize(path) == 0:
    raise ValueError(f'{path}: file is empty (expected a torch checkpoint)')
  with open(path, 'rb') as f:
    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
      is_zip = zipfile.is_zipfile(f)
      f.seek(0)
      return _load_zip(path, f, buf) if is_zip else _load_legacy(path, f, buf)
    except ValueError:
      raise
    except Exception as e:  # pickle/zip/struct errors: all mean a damaged file.
      raise ValueError(f'{path}: corrupt or unsupported torch checkpoint ({type(e).__name__}: {e})') from None


def _load_zip(path, f, buf):
  try:
    archive = zipfile.ZipFile(f)
  except zipfile.BadZipFile as e:
    raise ValueError(f'{path}: damaged zip archive ({e})') from None
  names = archive.namelist()
  pickles = sorted((n for n in names if n == 'data.pkl' or n.endswith('/data.pkl')), key=len)
  if not pickles:
    raise ValueError(f'{path}: zip archive has no data.pkl (not a torch checkpoint)')
  root = pickles[0][:-len('data.pkl')]
  if root + 'constants.pkl' in names:
    raise ValueError(f'{path}: is a TorchScript archive; save a state dict with torch.save instead')
  big_endian = root + 'byteorder' in names and archive.read(root + 'byteorder').strip() == b'big'
  storages = {}

  def load_storage(dtype, key, numel, view):
    if key not in storages:
      storages[key] = _zip_storage(path, archive, buf, root + 'data/' + key, dtype, numel, big_endian)
    return _apply_view(storages[key], view)

  with archive.open(pickles[0]) as data_pkl:
    return _restricted_load(data_pkl, path, load_storage)


def _zip_storage(path, archive, buf, name, dtype, numel, big_endian):
  try:
    info = archive.getinfo(name)
  except KeyError:
    raise ValueError(f'{path}: zip archive lacks storage member {name}') from None
  nbytes = numel * dtype.itemsize
  if info.file_size < nbytes:
    raise ValueError(f'{path}: storage {name} has {info.file_size} bytes, expected {nbytes}')
  if info.compress_type == zipfile.ZIP_STORED:
    # Local header: 30 fixed bytes, then the name and extra field.
    name_len, extra_len = struct.unpack('<HH', buf[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    array = np.frombuffer(buf, dtype, count=numel, offset=start)
  else:
    array = np.frombuffer(archive.read(name), dtype, count=numel)
  return array.byteswap() if big_endian and dtype.itemsize > 1 else array


def _apply_view(storage, view):
  if view is None:
    return storage
  if not isinstance(view, tuple) or len(view) != 3:
    raise ValueError(f'unsupported storage view metadata {view!r:.80}')
  _, offset, numel = view
  offset, numel = _check_ints('view', (offset, numel))
  if offset + numel > storage.size:
    raise ValueError(f'storage view ({offset}, {numel}) exceeds its root of {storage.size} elements')
  return storage[offset:offset + numel]


def _load_legacy(path, f, buf):
  """Legacy stream; the main pickle is read twice (dtypes first, then data).

  Storage bytes follow the main pickle and their element counts are only
  meaningful once each storage's dtype is known, so a first pass collects the
  dtypes (tensor rebuilds are skipped) and the second pass builds the arrays.
  """
  if buf[:1] != b'\x80':
    if buf[:4] == _ZIP_LOCAL_HEADER:  # Starts like a zip but zipfile found no end record: cut short.
      raise ValueError(f'{path}: truncated or damaged zip archive (no end-of-archive record); expected a '
                       'complete torch .pth/.ckpt file (was the download or copy interrupted?)')
    if tarfile.is_tarfile(path):
      raise ValueError(f'{path}: legacy tar checkpoint (torch < 0.4) is not supported')
    raise ValueError(f'{path}: not a torch checkpoint (neither a zip archive nor a legacy torch pickle)')
  if _restricted_load(f, path) != _LEGACY_MAGIC_NUMBER:
    raise ValueError(f'{path}: not a torch checkpoint (legacy magic number missing)')
  version = _restricted_load(f, path)
  if version != _LEGACY_PROTOCOL_VERSION:
    raise ValueError(f'{path}: unsupported legacy torch protocol version {version!r}')
  sys_info = _restricted_load(f, path)
  if isinstance(sys_info, dict) and sys_info.get('little_endian') is False:
    raise ValueError(f'{path}: big-endian legacy checkpoints are not supported')
  main_start = f.tell()
  dtypes = {}

  def record_dtype(dtype, key, numel, view):
    dtypes[key] = dtype
    return np.zeros(0, dtype)

  _restricted_load(f, path, record_dtype, skip_tensors=True)
  keys = _restricted_load(f, path)
  if not isinstance(keys, list) or set(map(_ascii, keys)) != set(dtypes):
    raise ValueError(f'{path}: legacy storage key list does not match the pickled storages')
  roots, pos = {}, f.tell()
  for key in map(_ascii, keys):
    dtype = dtypes[key]
    (numel,) = struct.unpack('<q', buf[pos:pos + 8])
    start, pos = pos + 8, pos + 8 + numel * dtype.itemsize
    if numel < 0 or pos > len(buf):
      raise ValueError(f'{path}: legacy storage {key} is truncated')
    roots[key] = np.frombuffer(buf, dtype, count=numel, offset=start)

  def load_storage(dtype, key, numel, view):
    root = roots[key]
    if numel > root.size:
      raise ValueError(f'{path}: storage {key} holds {root.size} elements, pickle expects {numel}')
    return _apply_view(root, view)

  f.seek(main_start)
  return _restricted_load(f, path, load_storage)
