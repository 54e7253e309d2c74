"""Several datasets per split, as the reference's `datasets.<split>` node lists them.

The per-dataset keys (`LIST_KEYS`) take a scalar or a list. A scalar means a
one-element list; a one-element list applies to every dataset; any other
length must equal the number of datasets, which is the longest list (the
reference's `prep_dataset` + `make_list`; when lists disagree we take the length
most of them share, so the error names the odd one). `cameras` is one camera list per
dataset: a flat list of names is one list, shared by every dataset; a list of
lists gives each dataset its own. `expand` turns a split's flat config into one
flat config per dataset, with scalar values; `prefix` names a dataset the way
the reference prefixes its metrics (`KITTI_raw-eigen_val_files-velodyne`).
"""
import os

LIST_KEYS = ('dataset', 'path', 'split', 'depth_type', 'input_depth_type', 'cameras', 'repeat')


def _as_list(value):
  return list(value) if isinstance(value, (list, tuple)) else [value]


def _camera_lists(value, where):
  """cameras → list of per-dataset camera lists ('' / () = the reader's default)."""
  if value is None or value == '' or (isinstance(value, (list, tuple)) and not value):
    return [()]
  if isinstance(value, str):
    return [(value,)]
  if all(isinstance(v, (list, tuple)) for v in value):
    return [tuple(v) for v in value]
  if any(isinstance(v, (list, tuple)) for v in value):
    raise ValueError(f'{where}.cameras: expected camera names or one list of names per dataset, got {value!r}')
  return [tuple(value)]


def _check_types(where, key, values):
  want = int if key == 'repeat' else str
  for v in values:
    if key == 'cameras':
      if not all(isinstance(c, str) for c in v):
        raise ValueError(f'{where}.cameras: expected camera names (strings), got {list(v)!r}')
    elif not isinstance(v, want) or isinstance(v, bool):
      raise ValueError(f'{where}.{key}: expected {want.__name__} or a list of them, got {v!r}')


def lists(cfg, where='datasets'):
  """{key: list} of the split's per-dataset keys, broadcast to the number of datasets.

  Raises:
    ValueError: starting with `<where>.<key>` when a list's length is neither 1 nor the
      number of datasets, or a value has the wrong type.
  """
  raw = {}
  for key in LIST_KEYS:
    if key not in cfg:
      continue
    raw[key] = _camera_lists(cfg[key], where) if key == 'cameras' else _as_list(cfg[key])
    if not raw[key]:
      raw[key] = [''] if key != 'repeat' else [1]
  # The number of datasets: the length most lists agree on (ties: the longest, as the reference's
  # max), so an error names the list that disagrees.
  lengths = [len(v) for v in raw.values() if len(v) > 1]
  n = max(lengths, key=lambda m: (lengths.count(m), m)) if lengths else 1
  listed = ', '.join(f'{k} {len(v)}' for k, v in raw.items() if len(v) > 1)
  for key, values in raw.items():
    if len(values) not in (1, n):
      raise ValueError(f'{where}.{key}: {len(values)} values for {n} datasets; every list must have '
                       f'one value or one per dataset (lengths: {listed})')
    raw[key] = values * n if len(values) == 1 else values
    _check_types(where, key, raw[key])
  return raw


def expand(cfg, where='datasets'):
  """One flat config per dataset: `cfg` with each list key replaced by that dataset's value."""
  values = lists(cfg, where)
  n = len(next(iter(values.values()), ['']))
  return [dict(cfg, **{k: v[i] for k, v in values.items()}) for i in range(n)]


def prefix(cfg):
  """The reference's metric prefix of one expanded dataset config (`prepare_dataset_prefix`).

  Last path component without extension, then the split file's stem (unless the split is a
  pattern with '{'), the depth type, and the camera when exactly one is named.
  """
  out = os.path.splitext(str(cfg.get('path', '')).rstrip('/').split('/')[-1])[0]
  split = str(cfg.get('split') or '')
  if split and '{' not in split:
    out += '-' + os.path.splitext(os.path.basename(split))[0]
  if cfg.get('depth_type'):
    out += '-' + str(cfg['depth_type'])
  cameras = cfg.get('cameras') or ()
  cameras = (cameras,) if isinstance(cameras, str) else tuple(cameras)
  if len(cameras) == 1:
    out += '-' + str(cameras[0])
  return out
