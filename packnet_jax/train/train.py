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
# clu's writers import TensorFlow: `_tf` pins it to the CPU first.
from packnet_jax.data import _tf  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
from clu import periodic_actions

from packnet_jax import config_utils
from packnet_jax.data import config as data_config
from packnet_jax.data import dataset_list
from packnet_jax.data import pipeline
from packnet_jax.eval import predict as predict_lib
from packnet_jax.eval import report
from packnet_jax.eval import runner
from packnet_jax.eval import split_eval
from packnet_jax.workdir import checkpoints as checkpointing
from packnet_jax.train import collapse
from packnet_jax.train import continue_from_ckpt
from packnet_jax.train import logging as train_logging
from packnet_jax.train import model_init
from packnet_jax.train import optim
from packnet_jax.train import train_step as train_step_lib
from packnet_jax.workdir import run_files as workdir_lib
from packnet_jax.parallel.device_layout import DeviceLayout
from packnet_jax.parallel.device_layout import unshard
from packnet_jax.train.train_state import TrainState
from packnet_jax.train.train_state import step_rng
from packnet_jax.utils import io as io_utils


HISTORY_STEPS = 1000
# Per-step values that are not losses (never reported as non-finite loss terms).
_BOOKKEEPING = ('grads_finite', 'flip', 'bad_streak', 'skipped_steps')


class NonFiniteLossError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


@dataclasses.dataclass
class TrainResult:
  """What a finished run returns (also handy in tests)."""
  state: TrainState          # host copy, unreplicated
  eval_metrics: dict         # last validation results ({} if none)
  history: list              # metrics of the last HISTORY_STEPS steps run by this call
  collapsed_at: int | None = None  # step at which the depth net collapsed (and stayed), else None


def _nonfinite_terms(metrics):
  terms = [k for k, v in metrics.items()
           if k not in _BOOKKEEPING and not k.startswith('grad_norm') and not np.isfinite(v)]
  if metrics.get('grads_finite', 1.0) < 1.0:
    terms.append('gradients')
  return terms


def _steps_per_epoch(config, num_samples):
  if config.arch.steps_per_epoch > 0:
    return int(config.arch.steps_per_epoch)
  steps = pipeline.train_steps_per_epoch(num_samples, config.datasets.train.batch_size,
                                         jax.local_device_count(), jax.process_count())
  if steps < 1:
    raise ValueError(f'datasets.train: {num_samples} samples cannot fill one global batch of '
                     f'{jax.process_count()}x{jax.local_device_count()}x{config.datasets.train.batch_size}')
  return steps


def _image_shape(config):
  image_shape = tuple(config.datasets.augmentation.image_shape)
  if not image_shape:
    raise ValueError("config key 'datasets.augmentation.image_shape': expected (H, W), got ()")
  return image_shape


def create_train_state(config, model, steps_per_epoch, load_weights=True):
  """Fresh TrainState on the host, and the lr schedules.

  Random init, then (unless `load_weights` is False, for a run about to restore its own
  checkpoint) ImageNet encoders, released weights and a reference run's optimiser state.
  """
  rng = jax.random.PRNGKey(config.arch.seed)
  init_rng, state_rng = jax.random.split(rng)
  variables = model_init.init_variables(model, config, init_rng, _image_shape(config), load_weights=load_weights)
  tx, schedules = optim.optimizer_from_config(config.optim, steps_per_epoch)
  state = TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=tx, rng=state_rng)
  if config.model.continue_training and load_weights:
    if not config.model.checkpoint_path:
      raise ValueError("config key 'model.continue_training': needs 'model.checkpoint_path' (a .ckpt)")
    state = continue_from_ckpt.continue_training(state, config.model.checkpoint_path,
                                                 steps_per_epoch)
  return jax.device_get(state), schedules


def restore_template(config, model, steps_per_epoch):
  """Zeros with the structure, shapes and dtypes of `create_train_state`'s state, and the lr schedules.

  What a run about to restore its own checkpoint restores into: built from shapes alone
  (`jax.eval_shape`), so a resumed run never compiles or runs the random initialisation.
  """
  variables = model_init.variable_shapes(model, config, _image_shape(config))
  tx, schedules = optim.optimizer_from_config(config.optim, steps_per_epoch)
  shapes = jax.eval_shape(lambda v, rng: TrainState.create(params=v['params'], batch_stats=v['batch_stats'],
                                                           tx=tx, rng=rng), variables, jax.random.PRNGKey(0))
  return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes), schedules


def _compile_step(config, model, layout):
  step_fn = train_step_lib.make_train_step(
      model, model_init.loss_options(config), flip_lr_prob=config.model.loss.flip_lr_prob,
      axis_name=train_step_lib.AXIS_NAME if layout.replicated else None)
  if layout.replicated:
    return train_step_lib.pmap_train_step(step_fn)
  return train_step_lib.jit_train_step(step_fn)


def depth_variables(params, batch_stats):
  """The depth net's own variables out of the SfmModel's (host or device trees)."""
  variables = {'params': params['depth_net']}
  if batch_stats and batch_stats.get('depth_net'):
    variables['batch_stats'] = batch_stats['depth_net']
  return variables


def run_validation(config, model, host_state, writer, step, workdir):
  """The project's one evaluation (`eval.split_eval`) on the validation split; logs and returns it.

  Writes `<workdir>/validation.json` (the results and their step), which
  `python -m packnet_jax.eval --checkpoint <workdir> --split validation` reproduces. With
  several validation datasets every one is evaluated on its own and reported under its
  prefix (TensorBoard `val/<prefix>/...`, validation.json keyed by prefix).
  """
  cfg = config_utils.dataset_config(config, 'validation')
  last = {}

  def keep_last(prefix, batch, inv):
    last[prefix] = (batch['rgb'], inv)

  results = split_eval.evaluate_split(
      model.depth_net, depth_variables(host_state.params, host_state.batch_stats), cfg, 'validation',
      runner.MetricParams.from_config(config), batch_size=config.datasets.validation.batch_size,
      max_batches=config.eval.max_batches, on_batch=keep_last)
  for prefix, res in split_eval.per_dataset(results):
    tag = f'val/{prefix}/' if prefix else 'val/'
    writer.write_scalars(step, {f'{tag}{k}': v for k, v in report.scalars(res).items()})
    if prefix in last and config.datasets.validation.num_logs > 0:
      rgb, inv = last[prefix]
      train_logging.write_depth_images(writer, step, unshard(rgb), unshard(inv), name=f'{tag}depth',
                                       max_images=config.datasets.validation.num_logs)
    where = f' {prefix}' if prefix else ''
    logging.info('validation at step %d%s: %s', step, where, report.summary_line(res))
    scaled, baseline = res['depth_gt']['abs_rel'], res['median_baseline_gt']['abs_rel']
    if scaled >= 0.99 * baseline:
      logging.warning('validation at step %d%s: median-scaled AbsRel %.4f is no better than the constant-depth '
                      'baseline %.4f: the depth net has not learned (yet)', step, where, scaled, baseline)
  if jax.process_index() == 0:
    report.write_json(os.path.join(workdir, workdir_lib.VALIDATION_FILE), dict(results, step=step))
  return results


def _monitored(best, config, results):
  """`{monitor: value}` for a checkpoint saved right after a validation (None without a monitor)."""
  if best is None:
    return None
  return {best.monitor: report.monitored_value(results, best.monitor, config.checkpoint.monitor_index)}


def _log_depth_images(model, host_state, batch, writer, step):
  """Inverse depth of the current training batch next to its images (TensorBoard).

  A colour-jittered batch carries only the originals (the step jitters them on
  the device), so its un-jittered images are shown.
  """
  rgb = unshard(batch['rgb'] if 'rgb' in batch else batch['rgb_original'])
  inv = _predict_inv_depth(model.depth_net, depth_variables(host_state.params, host_state.batch_stats),
                           jnp.asarray(rgb, jnp.float32))
  train_logging.write_depth_images(writer, step, rgb, np.asarray(inv), name='train/depth')


_predict_inv_depth = jax.jit(predict_lib.inv_depth, static_argnums=(0,))


def _should(every, step):
  return every > 0 and step % every == 0


class _StepReader:
  """Reads each step's metrics on the host, one step late, and enforces the non-finite stop.

  Everything it reads comes from the step's *outputs* (metrics): the state that
  went into a step is donated to it and must never be read afterwards.
  """

  def __init__(self, layout, max_consecutive_nonfinite, manager, collapse_monitor, writer):
    self.layout, self.limit, self.manager = layout, max_consecutive_nonfinite, manager
    self.collapse, self.writer = collapse_monitor, writer
    self.pending = None   # (step, device metrics) of the newest step not read yet
    self.history = collections.deque(maxlen=HISTORY_STEPS)

  def push(self, step, metrics):
    """Queues `step`; reads the previous one, which has finished or will shortly."""
    previous, self.pending = self.pending, (step, metrics)
    if previous is not None:
      self._read(*previous)

  def flush(self):
    """Reads the pending step (a host sync); returns its metrics or None."""
    previous, self.pending = self.pending, None
    return self._read(*previous) if previous is not None else None

  def _read(self, step, metrics):
    metrics = {k: float(v) for k, v in self.layout.host(metrics).items()}
    self.history.append(metrics)
    collapse.report(self.collapse, self.writer, step + 1, metrics)
    streak = int(metrics['bad_streak'])
    if streak:
      terms = _nonfinite_terms(metrics)
      logging.warning('step %d: non-finite %s; update skipped (%d in a row)', step, ', '.join(terms), streak)
      if streak >= self.limit:
        self.manager.wait_until_finished()
        raise NonFiniteLossError(
            f'step {step}: stopping after {streak} consecutive non-finite steps '
            f'(non-finite: {", ".join(terms)}); last good checkpoint: step {self.manager.latest_step()}')
    return metrics


def train_and_evaluate(config, workdir):
  """Trains (resuming from `workdir` if it has checkpoints) and evaluates.

  Returns:
    TrainResult.
  """
  config_utils.validate_config(config)
  workdir = io_utils.ensure_writable_dir(os.fspath(workdir), '--workdir')
  layout = DeviceLayout.for_run()
  train_cfg = config_utils.dataset_config(config, 'train')
  source = data_config.build_source(train_cfg, 'train', seed=config.arch.seed)  # scanned once
  steps_per_epoch = _steps_per_epoch(config, len(source))
  for name, part in zip(getattr(source, 'names', ()), getattr(source, 'sources', ())):
    logging.info('train %s: %d samples (repeats included)', name, len(part))
  total_steps = int(config.arch.max_steps or config.arch.max_epochs * steps_per_epoch)

  model = model_init.build_model(config)
  best = workdir_lib.best_checkpoints(config)
  manager = checkpointing.create_manager(workdir, keep=config.checkpoint.keep,
                                         async_save=config.checkpoint.async_save, best=best)
  latest = manager.latest_step()
  state = None
  if latest is None and config.model.continue_training:   # the reference run's epoch sets the start step
    state, schedules = create_train_state(config, model, steps_per_epoch)
  # A checkpoint is saved at its state's step, so the start is known before the state exists.
  start_step = int(state.step) if state is not None else int(latest or 0)
  train_iter = data_config.make_train_iterator(
      train_cfg, batch_size=config.datasets.train.batch_size, seed=config.arch.seed,
      start_step=start_step, shuffle=config.datasets.train.shuffle, source=source)
  # Read the first batch before the initialisation compiles and before anything is written: bad data
  # fails in seconds, with nothing written.
  first_batch = next(train_iter) if start_step < total_steps else None
  if latest is not None:
    state, schedules = restore_template(config, model, steps_per_epoch)
    state, meta = checkpointing.restore(manager, state)
    logging.info('resumed from %s at step %d', manager.directory, meta.get('step', -1))
    if int(state.step) != start_step:
      raise ValueError(f'{manager.directory}: checkpoint {latest} holds the state of step {int(state.step)}')
  elif state is None:
    state, schedules = create_train_state(config, model, steps_per_epoch)
  meta = {'name': config.name, 'steps_per_epoch': steps_per_epoch}

  workdir_lib.write_config(workdir, config)
  writer = train_logging.create_writer(workdir, config=config)
  p_step = _compile_step(config, model, layout)
  global_batch = config.datasets.train.batch_size * jax.device_count()
  base_rng = jnp.asarray(state.rng)
  host_state = state                    # the newest state the host holds a copy of
  state = layout.put(state)

  report_progress = periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.logging.progress_every_steps or None)
  has_validation = any(one['path'] for one in dataset_list.expand(config_utils.dataset_config(config, 'validation')))
  validates = has_validation and config.eval.schedule != 'off'
  eval_every = steps_per_epoch if config.eval.schedule == 'epoch' else config.eval.every_steps
  eval_results = {}
  if config.arch.validate_first and start_step == 0 and validates:
    eval_results = run_validation(config, model, host_state, writer, 0, workdir)
  collapse_monitor = collapse.CollapseMonitor.from_config(config.train)
  reader = _StepReader(layout, config.train.max_consecutive_nonfinite, manager, collapse_monitor, writer)
  t_log, n_log = time.time(), 0
  logging.info('training %s: steps %d → %d (%d per epoch), global batch %d on %d device(s)',
               config.name or 'model', start_step, total_steps, steps_per_epoch, global_batch,
               jax.device_count())

  for step in range(start_step, total_steps):
    batch = first_batch if step == start_step else next(train_iter)
    state, metrics = p_step(state, layout.shard(train_step_lib.model_inputs(batch)), step_rng(base_rng, step))
    # Read the previous step's metrics only now, with this step already queued on the device:
    # a host sync right after each dispatch would leave the accelerator idle between steps.
    reader.push(step, metrics)
    done = step + 1
    report_progress(done)
    n_log += 1
    if _should(config.logging.log_every_steps, done) or done == total_steps:
      metrics = reader.flush()
      elapsed = max(time.time() - t_log, 1e-9)
      opt_steps = done - int(metrics['skipped_steps'])
      scalars = dict(metrics, depth_collapsed=float(collapse_monitor.collapsed_at is not None),
                     lr_depth=float(schedules['depth'](opt_steps)),
                     lr_pose=float(schedules['pose'](opt_steps)), epoch=done / steps_per_epoch,
                     steps_per_sec=n_log / elapsed, images_per_sec=n_log * global_batch / elapsed)
      writer.write_scalars(done, {f'train/{k}': v for k, v in scalars.items()})
      if hasattr(source, 'dataset_of'):  # several train datasets: what this batch mixed
        counts = collections.Counter(source.dataset_of(int(i)) for i in np.ravel(batch['idx']))
        logging.info('step %d batch: %s', step, ', '.join(
            f'{counts[i]} from {name}' for i, name in enumerate(source.names)))
      t_log, n_log = time.time(), 0
    # Everything below works on a host copy taken now, before the next step donates `state`.
    epoch_end = done % steps_per_epoch == 0 and _should(config.checkpoint.every_epochs,
                                                        done // steps_per_epoch)
    wants_images = _should(config.logging.image_every_steps, done)
    wants_eval = validates and done % eval_every == 0 and done != total_steps
    # With checkpoint.monitor every validation is followed by a checkpoint that carries its metric.
    wants_save = (_should(config.checkpoint.every_steps, done) or epoch_end
                  or (wants_eval and best is not None)) and done != total_steps  # the final save follows
    if wants_images or wants_eval or wants_save:
      host_state = layout.host(state)
    if wants_images:
      _log_depth_images(model, host_state, batch, writer, done)
    if wants_eval:
      eval_results = run_validation(config, model, host_state, writer, done, workdir)
    if wants_save:
      checkpointing.save(manager, host_state, dict(meta, epoch=done // steps_per_epoch),
                         metrics=_monitored(best, config, eval_results) if wants_eval else None)
  reader.flush()
  host_state = layout.host(state)
  final_meta = dict(meta, epoch=int(host_state.step) // steps_per_epoch)
  if validates and best is not None:  # the final checkpoint carries the final validation's metric
    eval_results = run_validation(config, model, host_state, writer, total_steps, workdir)
  checkpointing.save(manager, host_state, final_meta,
                     metrics=_monitored(best, config, eval_results) if validates else None)
  manager.wait_until_finished()
  if validates and best is None:
    eval_results = run_validation(config, model, host_state, writer, total_steps, workdir)
  if validates:
    for prefix, res in split_eval.per_dataset(eval_results):
      print(f'final evaluation (step {total_steps}){" " + prefix if prefix else ""}: '
            f'{report.summary_line(res)}', flush=True)
  if best is not None:
    line = (f'best checkpoint by {best.monitor} (validation dataset {config.checkpoint.monitor_index}): '
            f'step {manager.best_step()}; kept steps {sorted(manager.all_steps())}')
    logging.info('%s', line)
    print(line, flush=True)
  if collapse_monitor.status_line():
    logging.warning('%s', collapse_monitor.status_line())
    print(collapse_monitor.status_line(), flush=True)
  writer.close()
  return TrainResult(state=host_state, eval_metrics=eval_results, history=list(reader.history),
                     collapsed_at=collapse_monitor.collapsed_at)
