"""One training step, the same pure function for 1 device (jit) or N (pmap).

`make_train_step(...)` returns `train_step(state, batch, rng) -> (state, metrics)`:

0. A batch that carries colour-jitter parameters (`jitter.PARAM_KEYS`: a
   jittered training batch) gets `rgb` / `rgb_context` here, as the jitter of
   `rgb_original` / `rgb_context_original` (`jitter.apply_jitter`: PIL's
   uint8 numbers, per sample).
1. One flip draw per batch (probability `flip_lr_prob`) from `rng`; the same
   `rng` is given to every device, so a pmapped global batch flips as a whole,
   as the reference does with one Python `random` draw per batch.
2. Forward + backward of the SfM model and its loss.
3. With `axis_name` (pmap): gradients, metrics and the BatchNorm statistics
   are averaged over devices with lax.pmean. BatchNorm *normalises* with each
   device's local batch statistics (like the reference's Horovod training,
   which has no SyncBN); the *running* averages are pmean'd after the step so
   all replicas hold identical variables (and checkpoints do not depend on
   which device is saved).
4. If the loss or any gradient is not finite, the update is skipped (`guarded_update`, which lets
   XLA update the donated parameters and Adam moments in place): params,
   batch_stats and opt_state stay as they were, `skipped_steps` and
   `bad_streak` count it. `step` always advances (it is the data position).
5. The metrics carry everything the host loop reads after the step
   (`bad_streak`, `skipped_steps`, gradient norms, the inverse depth's spread for
   the collapse monitor, train/collapse.py): the input state is donated,
   so the loop must never read it once the next step has been dispatched.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from packnet_jax.data import jitter
from packnet_jax.losses import objective
from packnet_jax.train import collapse
from packnet_jax.train import guarded_update
from packnet_jax.parallel.device_layout import AXIS_NAME
from packnet_jax.utils.dtypes import param_dtype
# Batch entries the step reads (strings such as file names stay on the host).
INPUT_KEYS = ('rgb', 'rgb_context', 'rgb_original', 'rgb_context_original', 'intrinsics',
              'depth', 'pose_context') + jitter.PARAM_KEYS


def model_inputs(batch):
  """The arrays of a data batch that the train step uses (float32; the jitter's op ids and shift int32)."""
  return {k: np.asarray(batch[k], np.int32 if k in jitter.INT_KEYS else np.float32)
          for k in INPUT_KEYS if k in batch}


def apply_colour_jitter(batch):
  """`rgb` / `rgb_context` = the colour jitter of the originals, if the batch carries its parameters.

  batch: [B, ...] entries (one device's batch). The originals are float32
  k/255; the jitter works on the levels k, and its uint8 output becomes
  float32 k/255 again, as the unjittered images are.
  """
  if jitter.PARAM_KEYS[0] not in batch:
    return batch
  frames = batch['rgb_original'][:, None]
  if 'rgb_context_original' in batch:
    frames = jnp.concatenate([frames, batch['rgb_context_original']], axis=1)
  params = {k: batch[k] for k in jitter.PARAM_KEYS}
  out = jitter.to_unit(jitter.apply_jitter_batch(jitter.to_levels(frames), params))
  batch = dict(batch, rgb=out[:, 0])
  if 'rgb_context_original' in batch:
    batch['rgb_context'] = out[:, 1:]
  return batch


def cast_floats(batch, dtype):
  """The batch's floating arrays in `dtype` (a float64 model gets float64 images and intrinsics)."""
  return {k: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) and v.dtype != dtype else v
          for k, v in batch.items()}


def make_train_step(model, loss_options, *, flip_lr_prob=0.5, axis_name=None):
  """Builds the pure train step.

  Args:
    model: an `SfmModel`.
    loss_options: `objective.LossOptions`.
    flip_lr_prob: probability of the depth-net flip augmentation.
    axis_name: pmap axis to average over (None on one device).

  Returns:
    train_step(state, batch, rng) -> (new_state, metrics dict of scalars).
  """
  float_dtype = param_dtype(model.depth_net.dtype)

  def train_step(state, batch, rng):
    batch = cast_floats(apply_colour_jitter(batch), float_dtype)
    flip_rng, dropout_rng = jax.random.split(rng)
    flip = jax.random.uniform(flip_rng) < flip_lr_prob
    if axis_name is not None:
      dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))
    rgb_context = batch.get('rgb_context')

    def loss_fn(params):
      variables = {'params': params}
      if state.batch_stats:
        variables['batch_stats'] = state.batch_stats
      (inv_depths, poses), updates = model.apply(
          variables, batch['rgb'], rgb_context, flip=flip, train=True,
          mutable=['batch_stats'], rngs={'dropout': dropout_rng})
      loss, metrics = objective.sfm_loss(inv_depths, poses, batch, loss_options)
      metrics = dict(metrics, **{collapse.SPREAD_METRIC: collapse.inv_depth_spread(
          jax.lax.stop_gradient(inv_depths[0]))})
      return loss, (metrics, updates.get('batch_stats', {}))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (metrics, batch_stats)), grads = grad_fn(state.params)
    metrics = dict(metrics, loss=loss)
    if axis_name is not None:
      grads = jax.lax.pmean(grads, axis_name)
      metrics = jax.lax.pmean(metrics, axis_name)
      batch_stats = jax.lax.pmean(batch_stats, axis_name)

    grads_finite = guarded_update.all_finite(grads)
    finite = jnp.isfinite(metrics['loss']) & grads_finite
    params, opt_state = guarded_update.guarded_update(state.tx, grads, state.opt_state, state.params, finite)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=guarded_update.select(finite, batch_stats, state.batch_stats),
        opt_state=opt_state,
        skipped_steps=state.skipped_steps + jnp.where(finite, 0, 1).astype(jnp.int32),
        bad_streak=jnp.where(finite, 0, state.bad_streak + 1).astype(jnp.int32))
    metrics['grad_norm'] = optax.global_norm(grads)
    for net, norm_name in (('depth_net', 'grad_norm_depth'), ('pose_net', 'grad_norm_pose')):
      if net in grads:
        metrics[norm_name] = optax.global_norm(grads[net])
    metrics['grads_finite'] = grads_finite.astype(loss.dtype)
    metrics['flip'] = flip.astype(loss.dtype)
    metrics['bad_streak'] = new_state.bad_streak
    metrics['skipped_steps'] = new_state.skipped_steps
    return new_state, metrics

  return train_step


def jit_train_step(train_step):
  """Single-device version (state donated: its buffers are reused)."""
  return jax.jit(train_step, donate_argnums=(0,))


def pmap_train_step(train_step):
  """Data-parallel version over local devices: state and batch carry a leading
  device axis; the rng is broadcast (same flip draw on every device)."""
  return jax.pmap(train_step, axis_name=AXIS_NAME, in_axes=(0, 0, None), donate_argnums=(0,))
