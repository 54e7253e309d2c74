"""A training workdir as a model source: its config and the networks of any complete checkpoint.

`<workdir>/config.json` is the resolved experiment config, written when a run
starts; `<workdir>/checkpoints/<step>/` are orbax checkpoints of the TrainState.
Together they are all that `eval`, `infer`, `export` and `load_model` need, so
nothing has to be told `--config` after training. The workdir may be a bucket
URL (`gs://`, `s3://`): every path here goes through `utils.storage`.
"""
import os

import jax

from packnet_jax import config_utils
from packnet_jax.models import registry
from packnet_jax.workdir import checkpoints as checkpointing
from packnet_jax.utils import io as io_utils
from packnet_jax.utils import metric_names
from packnet_jax.utils import storage

CONFIG_FILE = 'config.json'
VALIDATION_FILE = 'validation.json'


def is_workdir(path):
  """Whether `path` looks like a training workdir (has config.json or checkpoints/).

  Raises:
    ValueError: a bucket URL that cannot be reached (see `storage.use_bucket`).
  """
  path = storage.use_bucket(os.fspath(path), '--checkpoint')
  if not (storage.is_url(path) or os.path.isdir(path)):
    return False
  return storage.isfile(storage.join(path, CONFIG_FILE)) or \
      storage.isdir(storage.join(path, checkpointing.CHECKPOINT_DIR))


def write_config(workdir, config):
  """Writes the resolved config (process 0, atomically)."""
  if jax.process_index() == 0:
    io_utils.atomic_write_text(storage.join(workdir, CONFIG_FILE), config_utils.to_json(config) + '\n')


def read_config(workdir):
  """The locked experiment config a run wrote into `workdir`.

  Raises:
    ValueError: no config.json (a workdir from before config.json existed), or a damaged one.
  """
  path = storage.join(os.fspath(workdir), CONFIG_FILE)
  if not storage.isfile(path):
    raise ValueError(f'{workdir}: no {CONFIG_FILE} (written by `python -m packnet_jax.main` when a run '
                     'starts); pass --config=<the experiment file> instead')
  return config_utils.from_json(storage.read_text(path), source=path)


def best_checkpoints(config):
  """The run's `checkpointing.BestCheckpoints` (None without checkpoint.monitor)."""
  monitor = config.checkpoint.monitor
  return checkpointing.BestCheckpoints.from_config(
      config.checkpoint, metric_names.monitor_mode(monitor, config.checkpoint.mode) if monitor else 'min')


def restore_networks(workdir, step=None):
  """Flax variables of both networks in one complete checkpoint of `workdir`.

  Args:
    workdir: training workdir.
    step: checkpoint step (default: the newest complete one), or 'best': the best kept one by
      the run's checkpoint.monitor.

  Returns:
    ({'depth'|'pose': {'params', 'batch_stats'?}}, step).

  Raises:
    ValueError: no checkpoints, no complete one, or `step` not among them.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  folder = storage.join(storage.absolute(workdir), checkpointing.CHECKPOINT_DIR)
  if not storage.isdir(folder):
    raise ValueError(f'{workdir}: not a training workdir (no {checkpointing.CHECKPOINT_DIR}/ folder)')
  best = best_checkpoints(read_config(workdir)) if step == 'best' else None
  if step == 'best' and best is None:
    raise ValueError(f'--step: "best" needs a run with checkpoint.monitor set; {workdir} keeps the last '
                     'checkpoints only')
  manager = checkpointing.create_manager(workdir, async_save=False, best=best)
  steps = sorted(manager.all_steps())
  if not steps:
    raise ValueError(f'{folder}: holds no complete checkpoint')
  if step is None:
    step = steps[-1]
  elif step == 'best':
    step = manager.best_step()
    if step is None:
      raise ValueError(f'--step: no checkpoint in {folder} carries a {best.monitor} value (saved after a '
                       'validation)')
  elif step not in steps:
    raise ValueError(f'--step: {folder} has no checkpoint at step {step} (complete: {steps})')
  tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  params, stats = tree.get('params') or {}, tree.get('batch_stats') or {}
  networks = {}
  for kind, node in registry.NETWORKS.items():
    if node in params:
      networks[kind] = {'params': params[node]}
      if stats.get(node):
        networks[kind]['batch_stats'] = stats[node]
  if 'depth' not in networks:
    raise ValueError(f'{folder}/{step}: no params/depth_net in the checkpoint (keys: {sorted(params)})')
  return networks, int(step)


def model_spec(config):
  """The converted-model description (as `convert.converter.model_config`) of an experiment config."""
  def net_spec(node, **extra):
    net = config.model[node]
    return dict(name=net.name, version=net.version, dropout=float(net.dropout), weights=True, **extra)
  contexts = int(config.datasets.train.back_context) + int(config.datasets.train.forward_context)
  params = config.model.params
  return {
      'source': 'training workdir',
      'model_name': config.model.name,
      'depth_net': net_spec('depth_net'),
      'pose_net': net_spec('pose_net', nb_ref_imgs=contexts) if config.model.pose_net.name else None,
      'image_shape': [int(s) for s in config.datasets.augmentation.image_shape] or None,
      'min_depth': float(params.min_depth),
      'max_depth': float(params.max_depth),
      'crop': params.crop,
      'scale_output': params.scale_output,
      'rotation_mode': config.model.loss.rotation_mode,
  }
