"""`train_and_evaluate(config, workdir)`: the training loop.

Reads top to bottom: build the model and its variables → optimiser and
TrainState → resume from the newest checkpoint in `<workdir>/checkpoints`
(including the data position = step, and the RNG) → for each step: next
batch, train step (jit on one device, pmap over several), non-finite guard,
logging, images, validation, checkpoint → final checkpoint and evaluation.

Data parallelism: every process feeds its own shard ([local devices, per-device
batch, ...]); pmap averages gradients over *all* devices of all processes, so
replicas stay identical (see train_step for BatchNorm).
"""
import collections
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import periodic_actions

from packnet_jax import config_utils
from packnet_jax.data import config as data_config
from packnet_jax.data import pipeline
from packnet_jax.train import checkpointing
from packnet_jax.train import continue_from_ckpt
from packnet_jax.train import logging as train_logging
from packnet_jax.train import model_init
from packnet_jax.train import optim
from packnet_jax.train import train_step as train_step_lib
from packnet_jax.train import validation
from packnet_jax.train.train_state import TrainState
from packnet_jax.train.train_state import step_rng
from packnet_jax.utils import io as io_utils


HISTORY_STEPS = 1000


class NonFiniteLossError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


@dataclasses.dataclass
class TrainResult:
  """What a finished run returns (also handy in tests)."""
  state: TrainState          # host copy, unreplicated
  eval_metrics: dict         # last validation results ({} if none)
  history: list              # metrics of the last HISTORY_STEPS steps run by this call


def dataset_config(config, split):
  """The data pipeline's config for one split: the split node + augmentation keys."""
  cfg = dict(config.datasets[split].to_dict())
  cfg.update(config.datasets.augmentation.to_dict())
  cfg['with_pose'] = split == 'train' and model_init.loss_options(config).needs_pose_gt
  if split != 'train':
    cfg['back_context'] = cfg['forward_context'] = 0
  return cfg


def _num_devices():
  return jax.local_device_count()


def _use_pmap():
  return jax.device_count() > 1


def _unreplicate(tree):
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x[0])), tree)


def _host(state, replicated):
  return _unreplicate(state) if replicated else jax.device_get(state)


def _eval_variables(state, replicated):
  """Variables of device 0 for single-device evaluation."""
  params = _unreplicate(state.params) if replicated else state.params
  stats = _unreplicate(state.batch_stats) if replicated else state.batch_stats
  return {'params': params, 'batch_stats': stats} if stats else {'params': params}


def _nonfinite_terms(metrics):
  terms = [k for k, v in metrics.items()
           if k not in ('grads_finite', 'flip', 'grad_norm') and not np.isfinite(v)]
  if metrics.get('grads_finite', 1.0) < 1.0:
    terms.append('gradients')
  return terms


def _steps_per_epoch(config, train_cfg):
  if config.arch.steps_per_epoch > 0:
    return int(config.arch.steps_per_epoch)
  num_samples = len(data_config.build_source(train_cfg, 'train', seed=config.arch.seed))
  steps = pipeline.train_steps_per_epoch(num_samples, config.datasets.train.batch_size,
                                         _num_devices(), jax.process_count())
  if steps < 1:
    raise ValueError(f'datasets.train: {num_samples} samples cannot fill one global batch of '
                     f'{jax.process_count()}x{_num_devices()}x{config.datasets.train.batch_size}')
  return steps


def create_train_state(config, model, steps_per_epoch):
  """Fresh TrainState (random init + released weights) and the lr schedules."""
  rng = jax.random.PRNGKey(config.arch.seed)
  init_rng, state_rng = jax.random.split(rng)
  image_shape = tuple(config.datasets.augmentation.image_shape)
  if not image_shape:
    raise ValueError("config key 'datasets.augmentation.image_shape': expected (H, W), got ()")
  variables = model_init.init_variables(model, config, init_rng, image_shape)
  tx, schedules = optim.optimizer_from_config(config.optim, steps_per_epoch)
  state = TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=tx, rng=state_rng)
  if config.model.continue_training:
    if not config.model.checkpoint_path:
      raise ValueError("config key 'model.continue_training': needs 'model.checkpoint_path' (a .ckpt)")
    state = continue_from_ckpt.continue_training(state, config.model.checkpoint_path,
                                                 steps_per_epoch)
  return jax.device_get(state), schedules


def _compile_step(config, model, steps_per_epoch, total_steps):
  step_fn = train_step_lib.make_train_step(
      model, model_init.loss_options(config), flip_lr_prob=config.model.loss.flip_lr_prob,
      axis_name=train_step_lib.AXIS_NAME if _use_pmap() else None,
      inject_nonfinite_steps=tuple(config.train.inject_nonfinite_steps),
      progress_fn=lambda step: (step // steps_per_epoch) / max(1, total_steps // steps_per_epoch))
  if _use_pmap():
    return train_step_lib.pmap_train_step(step_fn)
  return train_step_lib.jit_train_step(step_fn)


def _device_batch(batch, replicated):
  inputs = train_step_lib.model_inputs(batch)   # [D, B, ...]
  if replicated:
    return inputs
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in inputs.items()}


def _run_eval(config, predict_fn, state, replicated, writer, step):
  cfg = dataset_config(config, 'validation')
  batches = data_config.make_eval_iterator(cfg, 'validation', batch_size=config.datasets.validation.batch_size,
                                           num_devices=1)
  params = config.model.params
  results, last = validation.evaluate(
      predict_fn, _eval_variables(state, replicated), batches, min_depth=params.min_depth,
      max_depth=params.max_depth, crop=params.crop, scale_output=params.scale_output,
      max_batches=config.eval.max_batches)
  writer.write_scalars(step, {f'val/{k}': v for k, v in results.items()})
  if last is not None and config.datasets.validation.num_logs > 0:
    train_logging.write_depth_images(writer, step, last[0], last[1], name='val/depth',
                                     max_images=config.datasets.validation.num_logs)
  logging.info('validation at step %d: %s', step, validation.summary_line(results))
  return results


def _should(every, step):
  return every > 0 and step % every == 0


def train_and_evaluate(config, workdir):
  """Trains (resuming from `workdir` if it has checkpoints) and evaluates.

  Returns:
    TrainResult.
  """
  config_utils.validate_config(config)
  workdir = os.fspath(workdir)
  workdir = io_utils.ensure_writable_dir(workdir, '--workdir')
  replicated = _use_pmap()
  train_cfg = dataset_config(config, 'train')
  steps_per_epoch = _steps_per_epoch(config, train_cfg)
  total_steps = int(config.arch.max_steps or config.arch.max_epochs * steps_per_epoch)

  model = model_init.build_model(config)
  state, schedules = create_train_state(config, model, steps_per_epoch)
  manager = checkpointing.create_manager(workdir, keep=config.checkpoint.keep,
                                         async_save=config.checkpoint.async_save)
  if manager.latest_step() is not None:
    state, meta = checkpointing.restore(manager, state)
    logging.info('resumed from %s at step %d', manager.directory, meta.get('step', -1))
  start_step = int(state.step)
  meta = {'name': config.name, 'steps_per_epoch': steps_per_epoch}

  train_iter = data_config.make_train_iterator(
      train_cfg, batch_size=config.datasets.train.batch_size, num_devices=_num_devices(),
      seed=config.arch.seed, start_step=start_step)
  # Read the first batch before writing anything: bad data fails with nothing written.
  first_batch = next(train_iter) if start_step < total_steps else None
  writer = train_logging.create_writer(workdir)
  p_step = _compile_step(config, model, steps_per_epoch, total_steps)
  predict_fn = validation.make_predict_fn(model)
  global_batch = config.datasets.train.batch_size * jax.device_count()
  base_rng = jnp.asarray(state.rng)
  state = train_step_lib.replicate(state) if replicated else train_step_lib.to_device(state)

  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_steps=config.logging.progress_every_steps or None)
  eval_every = config.eval.every_steps if config.eval.every_steps != 0 else steps_per_epoch
  if not config.datasets.validation.path:
    eval_every = -1  # nothing to validate on
  # Recent per-step metrics (bounded: constant memory however long the run).
  eval_results, history = {}, collections.deque(maxlen=HISTORY_STEPS)
  if config.arch.validate_first and start_step == 0 and eval_every > 0:
    eval_results = _run_eval(config, predict_fn, state, replicated, writer, 0)
  t_log, n_log = time.time(), 0
  logging.info('training %s: steps %d → %d (%d per epoch), global batch %d on %d device(s)',
               config.name or 'model', start_step, total_steps, steps_per_epoch, global_batch,
               jax.device_count())
  pending = None   # the last dispatched step whose metrics the host has not read yet

  def read_step(pending):
    """Host metrics of a finished step; stops the run after too many non-finite steps."""
    step, metrics, bad_streak = pending
    metrics = jax.device_get(jax.tree_util.tree_map(lambda x: x[0], metrics) if replicated else metrics)
    metrics = {k: float(v) for k, v in metrics.items()}
    history.append(metrics)
    bad_streak = int(np.asarray(jax.device_get(bad_streak)).reshape(-1)[0])
    if bad_streak:
      terms = _nonfinite_terms(metrics)
      logging.warning('step %d: non-finite %s; update skipped (%d in a row)', step, ', '.join(terms),
                      bad_streak)
      if bad_streak >= config.train.max_consecutive_nonfinite:
        manager.wait_until_finished()
        raise NonFiniteLossError(
            f'step {step}: stopping after {bad_streak} consecutive non-finite steps '
            f'(non-finite: {", ".join(terms)}); last good checkpoint: step {manager.latest_step()}')
    return metrics

  for step in range(start_step, total_steps):
    batch = first_batch if step == start_step else next(train_iter)
    state, metrics = p_step(state, _device_batch(batch, replicated), step_rng(base_rng, step))
    # Read the previous step's metrics only now, with this step already queued on the device:
    # a host sync right after each dispatch would leave the accelerator idle between steps.
    # Skipped (non-finite) steps never change the state, so checking one step late is safe.
    if pending is not None:
      read_step(pending)
    pending = (step, metrics, state.bad_streak)
    done = step + 1
    report(done)
    n_log += 1
    if _should(config.logging.log_every_steps, done) or done == total_steps:
      metrics, pending = read_step(pending), None
      elapsed = max(time.time() - t_log, 1e-9)
      opt_steps = done - int(np.asarray(jax.device_get(state.skipped_steps)).reshape(-1)[0])
      scalars = dict(metrics, lr_depth=float(schedules['depth'](opt_steps)),
                     lr_pose=float(schedules['pose'](opt_steps)), epoch=done / steps_per_epoch,
                     steps_per_sec=n_log / elapsed, images_per_sec=n_log * global_batch / elapsed)
      writer.write_scalars(done, {f'train/{k}': v for k, v in scalars.items()})
      t_log, n_log = time.time(), 0
    if _should(config.logging.image_every_steps, done):
      rgb = _device_batch(batch, False)['rgb']
      inv, _ = predict_fn(_eval_variables(state, replicated), jnp.asarray(rgb))
      train_logging.write_depth_images(writer, done, rgb, np.asarray(inv), name='train/depth')
    if eval_every > 0 and done % eval_every == 0 and done != total_steps:
      eval_results = _run_eval(config, predict_fn, state, replicated, writer, done)
    epoch_end = done % steps_per_epoch == 0 and _should(config.checkpoint.every_epochs,
                                                        done // steps_per_epoch)
    if _should(config.checkpoint.every_steps, done) or epoch_end:
      checkpointing.save(manager, _host(state, replicated), dict(meta, epoch=done // steps_per_epoch))
  if pending is not None:
    read_step(pending)
  host_state = _host(state, replicated)
  checkpointing.save(manager, host_state, dict(meta, epoch=int(host_state.step) // steps_per_epoch))
  manager.wait_until_finished()
  if eval_every >= 0:
    eval_results = _run_eval(config, predict_fn, state, replicated, writer, total_steps)
    print(f'final evaluation (step {total_steps}): {validation.summary_line(eval_results)}', flush=True)
  writer.flush()
  return TrainResult(state=host_state, eval_metrics=eval_results, history=list(history))

