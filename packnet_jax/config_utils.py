"""Checks an experiment config against `configs/default.py` before anything runs.

Every key of an experiment config must exist in the default config with a
compatible type, so a typo (`optim.depht.lr`) or a wrong value type
(`arch.max_epochs='ten'`) fails at start with one line naming the key instead of
being silently ignored hours into a run.
"""
import collections.abc
import importlib

import ml_collections

# Choices that the code branches on; anything else is a typo.
CHOICES = {
    'model.name': ('SelfSupModel', 'SemiSupModel', 'VelSupModel'),
    'compute_dtype': ('float32', 'bfloat16', 'float16'),
    'optim.name': ('Adam',),
    'optim.scheduler.name': ('StepLR',),
    'model.loss.photometric_reduce_op': ('min', 'mean'),
    'model.loss.padding_mode': ('zeros', 'border'),
    'model.loss.rotation_mode': ('euler', 'quat'),
    'model.remat': ('none', 'full', 'save_conv'),
}


class ConfigError(ValueError):
  """A config key is unknown, has the wrong type or an invalid value."""


def default_config():
  """The reference-default ConfigDict (configs/default.py)."""
  return importlib.import_module('configs.default').get_config()


def _type_name(value):
  return type(value).__name__


def _compatible(default, value):
  """Whether `value` may replace `default` (int→float and list→tuple are fine)."""
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(default, bool) and isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  if isinstance(default, int):
    return isinstance(value, int)
  if isinstance(default, str):
    return isinstance(value, str)
  if isinstance(default, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(default))


def _check_node(node, default, prefix):
  for key in node.keys():
    path = f'{prefix}{key}'
    value = node[key]
    if key not in default:
      raise ConfigError(f'config key {path!r}: unknown (not in configs/default.py)')
    ref = default[key]
    if isinstance(ref, (ml_collections.ConfigDict, collections.abc.Mapping)):
      if not isinstance(value, (ml_collections.ConfigDict, collections.abc.Mapping)):
        raise ConfigError(
            f'config key {path!r}: expected a group of keys, got {_type_name(value)} {value!r}')
      _check_node(value, ref, path + '.')
    elif not _compatible(ref, value):
      raise ConfigError(
          f'config key {path!r}: expected {_type_name(ref)}, got {_type_name(value)} {value!r}')


def _check_values(config):
  for path, allowed in CHOICES.items():
    node = config
    for part in path.split('.'):
      node = node[part]
    if node not in allowed:
      raise ConfigError(f'config key {path!r}: expected one of {allowed}, got {node!r}')
  for name in ('train', 'validation', 'test'):
    batch = config.datasets[name].batch_size
    if batch < 1:
      raise ConfigError(f'config key \'datasets.{name}.batch_size\': expected >= 1, got {batch}')
  shape = tuple(config.datasets.augmentation.image_shape)
  if shape and (len(shape) != 2 or any(int(s) % 32 for s in shape)):
    raise ConfigError('config key \'datasets.augmentation.image_shape\': expected (H, W) '
                      f'with multiples of 32, got {shape}')


def validate_config(config, default=None):
  """Raises ConfigError (one line, naming the key) if `config` is not usable.

  Args:
    config: the experiment ConfigDict (after command-line overrides).
    default: the reference ConfigDict; defaults to configs/default.py.
  """
  _check_node(config, default_config() if default is None else default, '')
  _check_values(config)
  return config
