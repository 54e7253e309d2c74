"""orbax checkpoints of the TrainState in `<workdir>/checkpoints`.

* `create_manager`: keep-last-N, optionally asynchronous writes (the train loop
  continues while the arrays are written).
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


def create_manager(workdir, *, keep=5, async_save=True):
  """CheckpointManager for `<workdir>/checkpoints` (created if needed)."""
  directory = storage.join(storage.absolute(workdir), CHECKPOINT_DIR)
  atomicity = None
  if storage.scheme(directory) == 's3':
    _patches.install_orbax_s3()
  if storage.is_url(directory):  # object stores cannot rename a folder: commit file instead
    atomicity = ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.COMMIT_FILE)
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max(1, int(keep)), enable_async_checkpointing=bool(async_save), create=True,
      atomicity_options=atomicity)
  _remove_partial_writes(directory)
  return ocp.CheckpointManager(directory, options=options)


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


def save(manager, state, meta, *, force=False):
  """Saves a host (unreplicated) TrainState at `state.step`; returns whether it saved."""
  step = int(jax.device_get(state.step))
  if step in manager.all_steps():
    return False
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_to_numpy_tree(state)),
      meta=ocp.args.JsonSave(dict(meta, step=step))), force=force)


def latest_step(manager):
  """The step of the newest complete checkpoint, or None."""
  return manager.latest_step()


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
