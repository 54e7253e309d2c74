"""The deterministic weight recipe of the reference fixtures (docs/reference.md §9), in numpy.

Used only by tests: it fills a torch-style state dict (network-level keys, torch
shapes) that then goes through the converter's key mapping like a real `.ckpt`.
"""
import math
import zlib

import numpy as np


def recipe_value(key, shape, vector_keys=frozenset()):
  """Returns the recipe tensor for one state-dict entry.

  Args:
    key: network-level torch key (no `model.depth_net.` prefix).
    shape: torch shape of the entry.
    vector_keys: keys whose `.weight` is 1-D (norm layers); needed to classify
      `.bias` entries. If omitted, a 1-D bias is treated as a conv/linear bias
      unless `vector_keys` contains its weight.
  """
  shape = tuple(int(s) for s in shape)
  if key.endswith('num_batches_tracked'):
    return np.zeros(shape, np.int64)
  z = np.random.RandomState(zlib.crc32(key.encode('utf-8')) % 2**32).standard_normal(shape).astype(np.float32)
  f = np.float32
  if key.endswith('.running_mean'):
    return f(0.1) * z
  if key.endswith('.running_var'):
    return f(1.0) + f(0.5) * np.abs(z)
  if key.endswith('.weight'):
    if len(shape) >= 2:
      return f(0.8 * math.sqrt(2.0 / float(np.prod(shape[1:])))) * z
    return f(1.0) + f(0.1) * z
  if key.endswith('.bias'):
    if key[:-5] + '.weight' in vector_keys:
      return f(0.1) * z
    return f(0.01) * z
  raise ValueError(f'recipe: no rule for key {key!r}')


def recipe_state_dict(entries, prefix=''):
  """Builds {key: array} for a list of (key, shape) in state-dict order.

  `prefix` is prepended to each key before seeding (layers_units uses '<layer>.').
  Returned keys are the unprefixed ones.
  """
  entries = [(k, tuple(s)) for k, s in entries]
  vector_keys = {prefix + k for k, s in entries if k.endswith('.weight') and len(s) == 1}
  return {k: recipe_value(prefix + k, s, vector_keys) for k, s in entries}
