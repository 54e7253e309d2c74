"""The experiment config: loading, value checks, and the per-split dataset view.

The schema is `configs/default.py`, whose `get_config()` returns a *locked*
ConfigDict: ml_collections itself rejects unknown keys and values of the wrong
type, naming the key. What it cannot know is checked here: the values the code
branches on (choices), ranges and shapes. Every CLI loads configs through
`configs/*.py` files (ml_collections config_flags) or a training workdir's
`config.json` (`from_json`), then calls `validate_config`.
"""
import importlib
import json

from packnet_jax.data import dataset_list
from packnet_jax.models import registry
from packnet_jax.losses import objective
from packnet_jax.utils import metric_names

# Choices that the code branches on; anything else is a typo.
CHOICES = {
    'model.name': ('SelfSupModel', 'SemiSupModel', 'VelSupModel'),
    'compute_dtype': registry.COMPUTE_DTYPES,
    'optim.name': ('Adam',),
    'optim.scheduler.name': ('StepLR',),
    'model.loss.photometric_reduce_op': ('min', 'mean'),
    'model.loss.padding_mode': ('zeros', 'border'),
    'model.loss.rotation_mode': ('euler', 'quat'),
    'model.remat': ('none', 'full', 'save_conv'),
    'eval.schedule': ('epoch', 'steps', 'off'),
    'checkpoint.mode': ('auto', 'min', 'max'),
}
SPLITS = ('train', 'validation', 'test')


class ConfigError(ValueError):
  """A config key is unknown, has the wrong type or an invalid value."""


def default_config():
  """The reference-default, locked ConfigDict (configs/default.py)."""
  return importlib.import_module('configs.default').get_config()


def _check_values(config):
  for path, allowed in CHOICES.items():
    node = config
    for part in path.split('.'):
      node = node[part]
    if node not in allowed:
      raise ConfigError(f'config key {path!r}: expected one of {allowed}, got {node!r}')
  for name in SPLITS:
    try:  # The per-dataset keys accept any type (scalar or list): their values are checked here.
      dataset_list.lists(config.datasets[name], f'datasets.{name}')
    except ValueError as e:
      key, _, detail = str(e).partition(': ')
      raise ConfigError(f'config key {key!r}: {detail}') from None
    batch = config.datasets[name].batch_size
    if batch < 1:
      raise ConfigError(f'config key \'datasets.{name}.batch_size\': expected >= 1, got {batch}')
  if config.eval.schedule == 'steps' and config.eval.every_steps < 1:
    raise ConfigError(f"config key 'eval.every_steps': expected >= 1 with eval.schedule 'steps', "
                      f'got {config.eval.every_steps}')
  _check_monitor(config)
  shape = tuple(config.datasets.augmentation.image_shape)
  if shape and (len(shape) != 2 or any(int(s) % 32 for s in shape)):
    raise ConfigError('config key \'datasets.augmentation.image_shape\': expected (H, W) '
                      f'with multiples of 32, got {shape}')


def _check_monitor(config):
  """checkpoint.monitor names a metric that validation reports, on a validation dataset that exists."""
  ckpt = config.checkpoint
  if not ckpt.monitor:
    return
  try:
    row, _ = metric_names.parse_monitor(ckpt.monitor)
  except ValueError as e:
    raise ConfigError(f"config key 'checkpoint.monitor': {str(e).partition(': ')[2]}") from None
  if '_pp' in row and not config.eval.post_process:
    raise ConfigError(f"config key 'checkpoint.monitor': {ckpt.monitor!r} is a post-processed metric, "
                      'which eval.post_process=False does not compute')
  datasets = dataset_list.expand(config.datasets.validation.to_dict(), 'datasets.validation')
  if not any(one['path'] for one in datasets):
    raise ConfigError("config key 'checkpoint.monitor': needs a validation dataset (datasets.validation.path)")
  if not 0 <= ckpt.monitor_index < len(datasets):
    raise ConfigError(f"config key 'checkpoint.monitor_index': expected in [0, {len(datasets)}) (the "
                      f'validation datasets), got {ckpt.monitor_index}')


def validate_config(config):
  """Raises ConfigError (one line, naming the key) if `config`'s values are not usable.

  Unknown keys and wrong types never get this far: the locked default config
  rejects them when they are set.
  """
  _check_values(config)
  return config


# Keys that configs/default.py no longer has but a workdir written before their removal holds in its
# config.json (written from the defaults, so dropping them keeps that run's config): (section, key).
RETIRED_KEYS = (('train', 'inject_nonfinite_steps'),)


def from_json(text, source='config.json'):
  """A locked experiment config from the JSON a training run wrote (see `workdir.run_files`).

  Raises:
    ConfigError: damaged JSON, or a key/type the current schema does not have.
  """
  try:
    values = json.loads(text)
  except ValueError as e:
    raise ConfigError(f'{source}: damaged JSON ({e})') from None
  for section, key in RETIRED_KEYS:
    if isinstance(values, dict) and isinstance(values.get(section), dict):
      values[section].pop(key, None)
  config = default_config()
  try:
    config.update(values)
  except (KeyError, AttributeError, TypeError) as e:
    raise ConfigError(f'{source}: does not match configs/default.py ({e})') from None
  return validate_config(config)


def to_json(config):
  """The config as JSON text (tuples become lists; `from_json` restores them)."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)


def dataset_config(config, split):
  """The data pipeline's flat config of one split: `datasets.augmentation` + `datasets.<split>`.

  Evaluation splits get no context frames; `with_pose` asks the train split for
  ground-truth poses when the loss needs them (VelSupModel).
  """
  if split not in SPLITS:
    raise ConfigError(f'split: expected one of {SPLITS}, got {split!r}')
  merged = dict(config.datasets.augmentation.to_dict())
  merged.update(config.datasets[split].to_dict())
  merged['with_pose'] = split == 'train' and objective.LossOptions(model=config.model.name).needs_pose_gt
  if split != 'train':
    merged['back_context'] = merged['forward_context'] = 0
  return merged
