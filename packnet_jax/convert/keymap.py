"""torch state-dict key ↔ Flax variable path mapping ("the mapping is data").

The Flax modules in `packnet_jax.models` name every submodule after the torch
attribute it mirrors (Sequential / ModuleList indices as '0', '1', ...), so a
torch key is derived mechanically from a Flax path:

  torch key = '.'.join(module path) + '.' + LEAF_NAMES[(collection, leaf)]

  ('params', ..., 'kernel')     → '.weight'  (Conv2d OIHW ↔ HWIO, Conv3d OIDHW ↔ DHWIO, Linear [o,i] ↔ [i,o])
  ('params', ..., 'scale')      → '.weight'  (GroupNorm / BatchNorm, 1-D, as is)
  ('params', ..., 'bias')       → '.bias'
  ('batch_stats', ..., 'mean')  → '.running_mean'
  ('batch_stats', ..., 'var')   → '.running_var'

e.g. params/encoder/encoder/layer1/0/conv1/kernel ↔ encoder.encoder.layer1.0.conv1.weight.
Keys are network-level (no `model.depth_net.` prefix). BatchNorm's
`num_batches_tracked` is accepted and ignored. A PackNet checkpoint trained with
dropout stores the shortcut as `...conv3.0.weight`; it is accepted as an alias of
`...conv3.weight`.
"""
import re

import numpy as np
from flax import traverse_util

LEAF_NAMES = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}
# Flax kernel rank → axis permutation from the torch layout (its inverse maps back).
_TORCH_TO_FLAX_AXES = {2: (1, 0), 4: (2, 3, 1, 0), 5: (2, 3, 4, 1, 0)}
_NUM_BATCHES_TRACKED = '.num_batches_tracked'
_DROPOUT_SHORTCUT = re.compile(r'^(.*\.conv3)\.(weight|bias)$')


def flax_path_to_torch_key(path):
  """('params', 'pre_calc', 'conv_base', 'kernel') → 'pre_calc.conv_base.weight'."""
  collection, *modules, leaf = path
  if (collection, leaf) not in LEAF_NAMES:
    raise ValueError(f'keymap: path: no torch name for leaf {leaf!r} in collection {collection!r} ({path})')
  return '.'.join(modules + [LEAF_NAMES[(collection, leaf)]])


def _torch_aliases(key):
  """Other spellings of `key` found in reference checkpoints (tried only if `key` is absent)."""
  match = _DROPOUT_SHORTCUT.match(key)
  return [f'{match.group(1)}.0.{match.group(2)}'] if match else []


def _axes(ndim):
  return _TORCH_TO_FLAX_AXES.get(ndim, tuple(range(ndim)))


def torch_shape(leaf, flax_shape):
  """Torch shape of a Flax leaf of shape `flax_shape` (kernels are permuted)."""
  flax_shape = tuple(int(s) for s in flax_shape)
  if leaf != 'kernel':
    return flax_shape
  axes = _axes(len(flax_shape))
  return tuple(flax_shape[axes.index(i)] for i in range(len(flax_shape)))


def torch_to_flax_array(value, key, leaf, flax_shape):
  """Converts one torch-layout array to the Flax layout of a leaf, checking the shape."""
  value = np.asarray(value)
  expected = torch_shape(leaf, flax_shape)
  if tuple(value.shape) != expected:
    raise ValueError(f'keymap: {key}: expected torch shape {expected}, got {tuple(value.shape)}')
  return np.transpose(value, _axes(value.ndim)) if leaf == 'kernel' else value


def expected_torch_entries(template_variables):
  """[(torch key, torch shape), ...] for every leaf of a Flax variables template (arrays or ShapeDtypeStructs)."""
  flat = traverse_util.flatten_dict(_as_dict(template_variables))
  return [(flax_path_to_torch_key(path), torch_shape(path[-1], np.shape(leaf))) for path, leaf in flat.items()]


def _as_dict(variables):
  return {k: dict(v) if hasattr(v, 'items') else v for k, v in dict(variables).items()}


def torch_state_dict_to_variables(state_dict, template_variables):
  """Fills a Flax variables template from a network-level torch state dict.

  Args:
    state_dict: {torch key: array in torch layout}.
    template_variables: the variables of `model.init` (or `jax.eval_shape` of it):
      {'params': ..., 'batch_stats': ...}; only shapes and dtypes are read.

  Returns:
    (variables, missing_keys, unused_keys): variables as nested dicts of numpy
    arrays in the template's dtypes (a missing entry keeps the template's value);
    missing_keys = torch keys the model needs but the state dict lacks (template
    order); unused_keys = state-dict keys nothing consumed (state-dict order;
    `num_batches_tracked` of a mapped BatchNorm counts as consumed).

  Raises:
    ValueError: a present key has the wrong shape.
  """
  flat = traverse_util.flatten_dict(_as_dict(template_variables))
  filled, missing, consumed = {}, [], set()
  for path, leaf in flat.items():
    key = flax_path_to_torch_key(path)
    found = next((k for k in [key] + _torch_aliases(key) if k in state_dict), None)
    if found is None:
      missing.append(key)
      filled[path] = leaf
      continue
    consumed.add(found)
    value = torch_to_flax_array(state_dict[found], found, path[-1], np.shape(leaf))
    filled[path] = value.astype(np.dtype(leaf.dtype), copy=False)
    if path[-1] == 'mean':
      consumed.add(found[:-len('.running_mean')] + _NUM_BATCHES_TRACKED)
  unused = [k for k in state_dict if k not in consumed]
  return traverse_util.unflatten_dict(filled), missing, unused


def variables_to_torch_state_dict(variables, num_batches_tracked=0):
  """Inverse mapping: Flax variables → {torch key: np.ndarray in torch layout}.

  Each BatchNorm also gets `num_batches_tracked` (int64 scalar) so the result
  loads strictly into the reference network; pass None to leave it out.
  """
  state_dict = {}
  for path, leaf in traverse_util.flatten_dict(_as_dict(variables)).items():
    key = flax_path_to_torch_key(path)
    value = np.asarray(leaf)
    if path[-1] == 'kernel':
      value = np.transpose(value, np.argsort(_axes(value.ndim)))
    state_dict[key] = value
    if path[-1] == 'var' and num_batches_tracked is not None:
      state_dict[key[:-len('.running_var')] + _NUM_BATCHES_TRACKED] = np.asarray(num_batches_tracked, np.int64)
  return state_dict
