"""Depth-collapse detection: a run whose depth net stops learning must say so.

A self-supervised run can fall into a constant-depth solution: the inverse depth
becomes (almost) the same at every pixel and the depth net's gradients vanish, so
nothing pulls it back. The run would then finish normally with a useless model.
The train step reports `inv_depth_spread` (the per-image coefficient of variation of
the full-resolution inverse depth, averaged over the batch) and `grad_norm_depth`;
`CollapseMonitor` flags a collapse when both stay below their thresholds for
`patience` consecutive steps, and a recovery when they no longer do.
"""
import dataclasses

import jax.numpy as jnp
from absl import logging

SPREAD_METRIC = 'inv_depth_spread'
GRAD_METRIC = 'grad_norm_depth'


def inv_depth_spread(inv_depth):
  """Mean over the batch of std / mean of each image's inverse depth ([B, H, W, 1] → scalar).

  0 for a constant map; about 0.1-1 for a depth net that sees structure.
  """
  inv = jnp.asarray(inv_depth).reshape(inv_depth.shape[0], -1)
  mean = jnp.mean(inv, axis=1)
  std = jnp.std(inv, axis=1)
  return jnp.mean(std / jnp.maximum(jnp.abs(mean), jnp.finfo(inv.dtype).tiny))


@dataclasses.dataclass
class CollapseMonitor:
  """Follows the per-step metrics and reports when the depth net collapses (and recovers).

  Attributes:
    spread_threshold: `inv_depth_spread` below this counts as a constant prediction.
    grad_threshold: `grad_norm_depth` below this counts as a vanished gradient.
    patience: consecutive steps with both before a collapse is reported.
  """
  spread_threshold: float = 1e-3
  grad_threshold: float = 1e-5
  patience: int = 10
  streak: int = 0
  collapsed_at: int | None = None   # step of the report; None while the net learns

  @classmethod
  def from_config(cls, train_config):
    return cls(spread_threshold=float(train_config.collapse_spread),
               grad_threshold=float(train_config.collapse_grad_norm),
               patience=int(train_config.collapse_patience))

  @property
  def enabled(self):
    return self.patience > 0

  def update(self, step, metrics):
    """Takes step `step`'s host metrics; returns a message when the state changes, else None."""
    if not self.enabled or SPREAD_METRIC not in metrics:
      return None
    spread = metrics[SPREAD_METRIC]
    grad = metrics.get(GRAD_METRIC, 0.0)
    constant = spread < self.spread_threshold and grad < self.grad_threshold
    self.streak = self.streak + 1 if constant else 0
    if self.collapsed_at is None and self.streak >= self.patience:
      self.collapsed_at = step
      return (f'step {step}: DEPTH COLLAPSED: the depth net predicts a constant depth '
              f'(inv_depth_spread {spread:.2e} < {self.spread_threshold:g} and grad_norm_depth '
              f'{grad:.2e} < {self.grad_threshold:g} for {self.streak} steps); this run is not learning')
    if self.collapsed_at is not None and not constant:
      message = (f'step {step}: the depth net recovered from the collapse of step {self.collapsed_at} '
                 f'(inv_depth_spread {spread:.2e}, grad_norm_depth {grad:.2e})')
      self.collapsed_at = None
      return message
    return None

  def status_line(self):
    """'' while learning; a warning sentence after an unrecovered collapse (for the final report)."""
    if self.collapsed_at is None:
      return ''
    return (f'WARNING: the depth net collapsed to a constant depth at step {self.collapsed_at} and '
            'never recovered: this model did not learn depth')


def report(monitor, writer, step, metrics):
  """Updates `monitor`; logs a change of state and writes `train/depth_collapsed` (0/1) to TensorBoard."""
  message = monitor.update(step, metrics)
  if message is None:
    return
  logging.warning('%s', message)
  print(message, flush=True)
  writer.write_scalars(step, {'train/depth_collapsed': float(monitor.collapsed_at is not None)})
  writer.write_texts(step, {'train/depth_collapse': message})
