"""Periodic evaluation on the validation split during training.

Reports the reference's four rows (SPEC §5) averaged over all validation
samples: `depth` (raw scale), `depth_gt` (median-scaled), and with flip
post-processing `depth_pp`, `depth_pp_gt`; plus `median_baseline_gt`, a
constant-depth prediction rescaled to the median GT depth, i.e. what a net
that learned nothing about the scene scores. Samples are weighted equally
(padding added by the data pipeline is masked out); multi-host runs sum the
per-host totals.
"""
import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

from packnet_jax.eval.metrics import METRIC_NAMES
from packnet_jax.eval.metrics import depth_metrics_per_sample
from packnet_jax.eval.metrics import post_process_inv_depth
from packnet_jax.geometry.depth import inv2depth
from packnet_jax.models import sfm_model

ROWS = ('depth', 'depth_gt', 'depth_pp', 'depth_pp_gt', 'median_baseline_gt')


def make_predict_fn(model):
  """jit fn(variables, rgb [B,H,W,3]) → (inv_depth, post-processed inv_depth), eval mode."""

  @jax.jit
  def predict(variables, rgb):
    both = jnp.concatenate([rgb, sfm_model.flip_lr(rgb)], axis=0)
    inv = model.apply(variables, both, train=False, method=sfm_model.SfmModel.depth)[0]
    inv = inv.astype(jnp.float32)
    b = rgb.shape[0]
    return inv[:b], post_process_inv_depth(inv[:b], inv[b:])

  return predict


@functools.partial(jax.jit, static_argnames=('min_depth', 'max_depth', 'crop', 'scale_output'))
def _sample_metrics(gt, inv, inv_pp, *, min_depth, max_depth, crop, scale_output):
  """[len(ROWS), 7] metrics of one sample (gt [1,H,W,1], inv maps [1,h,w,1])."""
  kwargs = dict(min_depth=min_depth, max_depth=max_depth, crop=crop, scale_output=scale_output)
  depth, depth_pp = inv2depth(inv), inv2depth(inv_pp)
  rows = []
  for pred, use_gt_scale in ((depth, False), (depth, True), (depth_pp, False), (depth_pp, True),
                             (jnp.ones_like(depth), True)):
    rows.append(depth_metrics_per_sample(gt, pred, use_gt_scale=use_gt_scale, **kwargs)[0][0])
  return jnp.stack(rows)


def _flat(x):
  """[D, B, ...] → [D·B, ...]."""
  x = np.asarray(x)
  return x.reshape((-1,) + x.shape[2:])


def _allreduce_sum(x):
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x)).sum(axis=0)


def evaluate(predict_fn, variables, batches, *, min_depth=0.0, max_depth=80.0, crop='',
             scale_output='resize', max_batches=0):
  """Runs one pass; returns ({'<row>/<metric>': float}, last (rgb, inv_depth) for images).

  Args:
    predict_fn: from make_predict_fn.
    variables: eval variables (params, batch_stats) on the default device.
    batches: iterable of numpy batches [D, B, ...] with rgb, depth, optional mask / depth_hw.
    min_depth, max_depth, crop, scale_output: the `model.params` config node.
    max_batches: stop after this many batches (0 = all).
  """
  totals = np.zeros((len(ROWS), len(METRIC_NAMES)), np.float64)
  count = 0.0
  last = None
  for i, batch in enumerate(batches):
    if max_batches and i >= max_batches:
      break
    if 'depth' not in batch:
      raise ValueError('validation batch: no depth (set datasets.validation.depth_type)')
    rgb = _flat(batch['rgb'])
    gt = _flat(batch['depth'])
    mask = _flat(batch['mask']) if 'mask' in batch else np.ones(len(rgb), bool)
    hw = _flat(batch['depth_hw']) if 'depth_hw' in batch else np.tile(gt.shape[1:3], (len(gt), 1))
    inv, inv_pp = jax.device_get(predict_fn(variables, jnp.asarray(rgb, jnp.float32)))
    for j in np.flatnonzero(mask):
      h, w = (int(s) for s in hw[j])
      totals += np.asarray(_sample_metrics(
          jnp.asarray(gt[j:j + 1, :h, :w], jnp.float32), inv[j:j + 1], inv_pp[j:j + 1],
          min_depth=float(min_depth), max_depth=float(max_depth), crop=str(crop),
          scale_output=str(scale_output)), np.float64)
      count += 1
    last = (rgb, inv)
  summed = _allreduce_sum(np.concatenate([totals.reshape(-1), [count]]))
  count = summed[-1]
  means = summed[:-1].reshape(totals.shape) / max(count, 1.0)
  results = collections.OrderedDict(
      (f'{row}/{name}', float(means[r, m]))
      for r, row in enumerate(ROWS) for m, name in enumerate(METRIC_NAMES))
  results['num_samples'] = float(count)
  return results, last


def summary_line(results):
  """One human-readable line with the headline metrics."""
  return ('AbsRel {:.4f} (median-scaled {:.4f}, +flip pp {:.4f}; constant-depth baseline {:.4f}) '
          'RMSE {:.3f} δ<1.25 {:.3f} on {} samples').format(
              results['depth/abs_rel'], results['depth_gt/abs_rel'], results['depth_pp_gt/abs_rel'],
              results['median_baseline_gt/abs_rel'], results['depth_gt/rmse'], results['depth_gt/a1'],
              int(results['num_samples']))
