"""Supervised inverse-depth losses against (sparse) ground truth (docs/reference.md §4.3).

The GT inverse depth is brought to every predicted scale with torch's legacy nearest rule, and
the per-scale losses are averaged over the first `num_scales` scales. With the prefix `sparse-` only
pixels with GT inv depth > 0 count. Sparse masking uses masked sums (static shapes, jit-friendly)
instead of the reference's boolean indexing; the results are the same means over the valid pixels.
"""
import jax.numpy as jnp

from packnet_jax.utils.checks import check_shape
from packnet_jax.geometry.sampling import resize_nearest_torch

METHODS = ('l1', 'mse', 'berhu', 'silog', 'abs_rel')
SPARSE_PREFIX = 'sparse-'

# SilogLoss constants of the reference: log ratio scale and variance weight.
_SILOG_RATIO = 10.0
_SILOG_VARIANCE_WEIGHT = 0.85
# BerHu threshold as a fraction of the largest signed error.
_BERHU_THRESHOLD = 0.2


def parse_method(method):
  """'sparse-l1' → ('l1', True); raises ValueError for unknown or unsupported methods."""
  sparse = method.startswith(SPARSE_PREFIX)
  base = method[len(SPARSE_PREFIX):] if sparse else method
  if base not in METHODS:
    raise ValueError(f'supervised_method: expected one of {METHODS} with optional prefix '
                     f"'{SPARSE_PREFIX}', got {method!r}")
  if base == 'berhu' and not sparse:
    # The reference crashes here (it concatenates a 4-D map with a 1-D vector).
    raise ValueError("supervised_method: 'berhu' is only defined as 'sparse-berhu' (the reference "
                     'fails on dense BerHu)')
  return base, sparse


def as_scale_list(pred_inv_depths, num_scales, batch_size):
  """Accepts one [B,h,w,1] map or a list; returns the first `num_scales` (None = all) as arrays."""
  if not isinstance(pred_inv_depths, (list, tuple)):
    pred_inv_depths = [pred_inv_depths]
  preds = [jnp.asarray(p) for p in pred_inv_depths]
  n = len(preds) if num_scales is None else num_scales
  if not 1 <= n <= len(preds):
    raise ValueError(f'num_scales: expected 1..{len(preds)} (number of predicted scales), got {n}')
  for i, p in enumerate(preds[:n]):
    check_shape(f'pred_inv_depths[{i}]', p, (batch_size, 'h', 'w', 1))
  return preds[:n]


def match_gt_scales(gt_inv_depth, pred_inv_depths):
  """GT inverse depth at each prediction's size (torch legacy nearest; as is where sizes agree)."""
  matched = []
  for p in pred_inv_depths:
    size = p.shape[1:3]
    matched.append(gt_inv_depth if gt_inv_depth.shape[1:3] == size
                   else resize_nearest_torch(gt_inv_depth, size))
  return matched


def masked_mean(x, mask):
  """Mean of x over mask (bool, same shape); masked-out entries may hold inf/nan."""
  return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.sum(mask)


def _berhu(pred, gt, mask):
  # Reference behaviour, not the textbook BerHu: c = 0.2 · max(p − g) with the signed difference,
  # and the loss is the mean of the concatenation [e, e[e > c]²] (e = |p − g|) over valid pixels.
  diff = pred - gt
  c = _BERHU_THRESHOLD * jnp.max(jnp.where(mask, diff, -jnp.inf))
  err = jnp.abs(diff)
  above = mask & (err > c)
  total = jnp.sum(jnp.where(mask, err, 0.0)) + jnp.sum(jnp.where(above, err ** 2, 0.0))
  return total / (jnp.sum(mask) + jnp.sum(above))


def _silog(pred, gt, mask):
  log_diff = jnp.log(pred * _SILOG_RATIO) - jnp.log(gt * _SILOG_RATIO)
  mean_sq, mean = masked_mean(log_diff ** 2, mask), masked_mean(log_diff, mask)
  variance = mean_sq - _SILOG_VARIANCE_WEIGHT * mean ** 2
  return jnp.sqrt(variance) * _SILOG_RATIO


def scale_loss(pred, gt, base, sparse):
  """Loss of one scale: pred and gt [B,h,w,1] inverse depths, method name without prefix."""
  if sparse:
    mask = gt > 0.0
    # Keep invalid pixels finite so that neither value nor gradient can pick up inf/nan there.
    gt = jnp.where(mask, gt, 1.0)
    pred = jnp.where(mask, pred, 1.0)
  else:
    # Dense: every pixel counts, GT zeros included (plain silog on sparse GT is NaN, as in torch).
    mask = jnp.ones(gt.shape, bool)
  if base == 'l1':
    return masked_mean(jnp.abs(pred - gt), mask)
  if base == 'mse':
    return masked_mean((pred - gt) ** 2, mask)
  if base == 'abs_rel':
    # Divides by the prediction, as the reference does.
    return masked_mean(jnp.abs(pred - gt) / pred, mask)
  if base == 'silog':
    return _silog(pred, gt, mask)
  return _berhu(pred, gt, mask)


def supervised_loss(pred_inv_depths, gt_inv_depth, method='sparse-l1', num_scales=4):
  """Supervised loss of the reference's SupervisedLoss.

  Args:
    pred_inv_depths: list of [B,h_i,w_i,1] predicted inverse depths (full resolution first), or
      one map.
    gt_inv_depth: [B,H,W,1] GT inverse depth (0 = no measurement).
    method: 'l1' | 'mse' | 'silog' | 'abs_rel', each optionally prefixed 'sparse-', or
      'sparse-berhu'.
    num_scales: how many of the predicted scales are used (None = all).

  Returns:
    Scalar: average over the scales of the per-scale loss.
  """
  base, sparse = parse_method(method)
  gt_inv_depth = jnp.asarray(gt_inv_depth)
  batch_size = check_shape('gt_inv_depth', gt_inv_depth, ('B', 'H', 'W', 1))['B']
  preds = as_scale_list(pred_inv_depths, num_scales, batch_size)
  gts = match_gt_scales(gt_inv_depth, preds)
  return sum(scale_loss(p, g, base, sparse) for p, g in zip(preds, gts)) / len(preds)
