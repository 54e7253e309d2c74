"""orbax checkpoints of the TrainState in `<workdir>/checkpoints`.

* `create_manager`: keep-last-N, optionally asynchronous writes (the train loop
  continues while the arrays are written), and optionally the best K by a
  validation metric (`BestCheckpoints`, orbax's own BestN policy).
* Each checkpoint holds `state` (the TrainState's pytree as host numpy arrays:
  step, params, batch_stats, opt_state, rng, skip counters) and `meta` (JSON:
  step, epoch, config name). The data iterator position *is* `state.step`, and
  the per-step PRNG key is fold_in(state.rng, step), so a run restored from
  step s continues exactly as if it had not stopped.
* Atomicity: in a local folder orbax writes into a temporary directory and
  renames it only when complete; in a bucket (no rename) it writes the step
  folder in place and adds `commit_success.txt` last (`COMMIT_FILE`). Either
  way a run killed mid-write leaves the previous checkpoint as the latest one;
  unfinished writes are ignored on restore and removed by the next run.
"""
import dataclasses
import math
import os
import shutil

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp

from packnet_jax.utils import _patches
from packnet_jax.utils import storage

CHECKPOINT_DIR = 'checkpoints'
COMMIT_FILE = 'commit_success.txt'  # orbax's marker of a complete step folder in a bucket


def create_manager(workdir, *, keep=5, async_save=True, best=None):
  """CheckpointManager for `<workdir>/checkpoints` (created if needed).

  best: None keeps the last `keep` checkpoints. A `BestCheckpoints` also keeps its `top_k`
  best by the metric that `save` receives (orbax's BestN, next to LatestN: the newest
  checkpoints stay, so a resumed run starts from the newest); `manager.best_step()` is the best.
  """
  directory = storage.join(storage.absolute(workdir), CHECKPOINT_DIR)
  atomicity = None
  if storage.scheme(directory) == 's3':
    _patches.install_orbax_s3()
  if storage.is_url(directory):  # object stores cannot rename a folder: commit file instead
    atomicity = ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.COMMIT_FILE)
  if best is None:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, int(keep)), enable_async_checkpointing=bool(async_save), create=True,
        atomicity_options=atomicity)
  else:
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        best_fn=best.value, best_mode=best.mode, enable_async_checkpointing=bool(async_save), create=True,
        atomicity_options=atomicity,
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=max(1, int(keep))),
            # Checkpoints saved without a validation (periodic ones) are LatestN's alone.
            policies.BestN(get_metric_fn=best.value, reverse=best.mode == 'min', n=best.top_k,
                           keep_checkpoints_without_metrics=False)]))
  _remove_partial_writes(directory)
  return ocp.CheckpointManager(directory, options=options)


@dataclasses.dataclass(frozen=True)
class BestCheckpoints:
  """Which checkpoints count as best: the reference's checkpoint.{monitor, mode, save_top_k}.

  `save` stores `{monitor: value}` with a checkpoint; `value` reads it back for orbax
  (a non-finite value ranks last).
  """
  monitor: str
  mode: str = 'min'        # 'min' | 'max'
  top_k: int | None = 5    # None: every checkpoint that has the metric

  @classmethod
  def from_config(cls, checkpoint_config, mode):
    """From the config's `checkpoint` node (None without a monitor); `mode` resolved ('min'/'max')."""
    if not checkpoint_config.monitor:
      return None
    top_k = int(checkpoint_config.save_top_k)
    return cls(checkpoint_config.monitor, mode, top_k if top_k > 0 else None)

  def value(self, metrics):
    value = float(metrics[self.monitor])
    if math.isfinite(value):
      return value
    return math.inf if self.mode == 'min' else -math.inf


def _remove_partial_writes(directory):
  """Deletes orbax temporary folders left by a run killed mid-write.

  Done here, synchronously, rather than with orbax's own background clean-up, whose
  thread can outlive a run that stops early on bad input and print a traceback.
  Orbax never treats these folders as checkpoints; removing them only frees disk
  (and, in a bucket, lets the step be written again: orbax will not write into an
  existing step folder).
  """
  if jax.process_index() != 0 or not storage.isdir(directory):
    return
  if storage.is_url(directory):
    for name in storage.listdir(directory):
      step = storage.join(directory, name)
      if name.isdigit() and not storage.exists(storage.join(step, COMMIT_FILE)):
        storage.rmtree(step)
    return
  for name in os.listdir(directory):
    if '.orbax-checkpoint-tmp' in name:
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _to_numpy_tree(state):
  """TrainState → nested dict of numpy arrays (the checkpointed pytree)."""
  tree = flax.serialization.to_state_dict(state)
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)


def save(manager, state, meta, *, force=False, metrics=None):
  """Saves a host (unreplicated) TrainState at `state.step`; returns whether it saved.

  metrics: `{monitor: value}` of the validation at this step, for a manager that keeps
  the best checkpoints (see `BestCheckpoints`).
  """
  step = int(jax.device_get(state.step))
  if step in manager.all_steps():
    return False
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_to_numpy_tree(state)),
      meta=ocp.args.JsonSave(dict(meta, step=step))), force=force, metrics=metrics)


def restore(manager, template_state, step=None):
  """Restores into the structure of `template_state`; returns (state, meta).

  Args:
    manager: from create_manager.
    template_state: a TrainState with the right structure, shapes and dtypes
      (e.g. the freshly initialised one); its `tx` is kept.
    step: which checkpoint (default: the latest).
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise ValueError('checkpoint: no checkpoint to restore')
  template = _to_numpy_tree(template_state)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
  state = flax.serialization.from_state_dict(template_state, restored['state'])
  return state, dict(restored['meta'] or {})
