"""Non-finite training steps on demand, for the tests of the skip/count/stop path.

`nan_at_steps(step_fn, steps)` wraps a train step (`train_step.make_train_step`)
so that its loss is NaN when `state.step` is one of `steps`: a traced
comparison, so one compiled program serves every step. While the wrapped step
is traced, `objective.sfm_loss` is swapped for one whose loss is multiplied by
that NaN-or-1 scale; the gradients turn NaN with it, and the metrics and the
depth net's BatchNorm statistics stay finite, so only the guarded update's
skip/count path is exercised. (NaN intrinsics would not do: the bilinear
sampler zero-pads the NaN coordinates, so the loss stays finite and only the
gradients turn NaN; NaN images do not survive the colour jitter's uint8 levels.)

`install(monkeypatch, steps)` puts it under the training loop in-process; the
subprocess tests run tests/lib/main_with_nonfinite.py instead of
`python -m packnet_jax.main`.
"""
import contextlib

import jax.numpy as jnp

from packnet_jax.losses import objective
from packnet_jax.train import train_step as train_step_lib


@contextlib.contextmanager
def _scaled_loss(scale):
  """`objective.sfm_loss` with its loss multiplied by `scale`, for the duration of one trace."""
  sfm_loss = objective.sfm_loss

  def scaled(*args, **kwargs):
    loss, metrics = sfm_loss(*args, **kwargs)
    return loss * scale.astype(loss.dtype), metrics

  objective.sfm_loss = scaled
  try:
    yield
  finally:
    objective.sfm_loss = sfm_loss


def nan_at_steps(step_fn, steps):
  """`step_fn(state, batch, rng)` with a NaN loss when `state.step` is in `steps`."""
  steps = tuple(int(s) for s in steps)

  def train_step(state, batch, rng):
    hit = jnp.any(state.step == jnp.asarray(steps, jnp.int32))
    with _scaled_loss(jnp.where(hit, jnp.nan, 1.0)):
      return step_fn(state, batch, rng)

  return train_step


def make_train_step(steps, make=train_step_lib.make_train_step):
  """A drop-in for `train_step.make_train_step` whose steps have a NaN loss at `steps`."""
  def make_nonfinite(*args, **kwargs):
    return nan_at_steps(make(*args, **kwargs), steps)
  return make_nonfinite


def install(monkeypatch, steps):
  """The training loop (train.py calls `train_step_lib.make_train_step`) gets a NaN loss at `steps`."""
  monkeypatch.setattr(train_step_lib, 'make_train_step', make_train_step(steps))
