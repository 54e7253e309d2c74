"""Depth evaluation metrics and flip post-processing, equal to the reference (docs/reference.md §5, §11.10).

Reference behaviour kept on purpose: min_depth defaults to 0.0, validity uses strict inequalities,
the median for GT scaling is torch's LOWER median, the prediction is resized as *depth* with
align-corners bilinear, and the batch average divides by the full batch size (a sample without valid
pixels adds 0 but still counts). Everything works on masks with static shapes, so it jits.
"""
import jax.numpy as jnp
import numpy as np

from packnet_jax.geometry.depth import inv2depth
from packnet_jax.geometry.sampling import resize_bilinear_align_corners
from packnet_jax.utils.checks import check_choice, check_shape
from packnet_jax.utils.metric_names import METRIC_NAMES  # noqa: F401  (re-exported: the row order)
# Row/column fractions of the crops: 'garg' as the reference; 'eigen' (beyond the reference, which
# has no such crop) is the usual Eigen et al. crop of monodepth-style evaluations.
CROPS = {
    'garg': ((0.40810811, 0.99189189), (0.03594771, 0.96405229)),
    'eigen': ((0.3324324, 0.91351351), (0.0359477, 0.96405229)),
}
SCALE_OUTPUTS = ('resize', 'top-center')
FUSE_METHODS = ('mean', 'max', 'min')


def scale_depth(pred, shape, scale_output='resize'):
  """Brings predicted depth [B,h,w,1] to the GT size shape=(H, W).

  'resize': bilinear with align_corners=True applied to depth; 'top-center': pasted into a zero
  canvas at the bottom rows, horizontally centred (left offset (W − w) // 2).
  """
  check_choice('scale_output', scale_output, SCALE_OUTPUTS)
  height, width = shape
  if scale_output == 'resize':
    return resize_bilinear_align_corners(pred, (height, width))
  top, left = height - pred.shape[1], (width - pred.shape[2]) // 2
  if top < 0 or left < 0:
    raise ValueError(f'pred: expected at most the GT size {(height, width)} for top-center, '
                     f'got {tuple(pred.shape[1:3])}')
  # The reference pads `left` on both sides; the right pad here also absorbs an odd remainder.
  return jnp.pad(pred, ((0, 0), (top, 0), (left, width - pred.shape[2] - left), (0, 0)))


def crop_mask(height, width, crop=''):
  """Static [H, W] bool mask of the evaluation crop ('' = everything), int() of the fractions."""
  check_choice('crop', crop, ('',) + tuple(CROPS))
  mask = np.ones((height, width), bool)
  if crop:
    (r0, r1), (c0, c1) = CROPS[crop]
    mask[:] = False
    mask[int(r0 * height):int(r1 * height), int(c0 * width):int(c1 * width)] = True
  return mask


def masked_lower_median(x, mask):
  """Per-sample lower median (torch.median) of x [B, N] over mask [B, N]; 0 where mask is empty."""
  count = jnp.sum(mask, axis=1)
  ordered = jnp.sort(jnp.where(mask, x, jnp.inf), axis=1)
  index = jnp.maximum((count - 1) // 2, 0)
  median = jnp.take_along_axis(ordered, index[:, None], axis=1)[:, 0]
  return jnp.where(count > 0, median, 0.0)


def _mean(x, mask, count):
  return jnp.sum(jnp.where(mask, x, 0.0), axis=1) / count


def depth_metrics_per_sample(gt, pred, *, use_gt_scale, min_depth=0.0, max_depth=80.0, crop='',
                             scale_output='resize', bin_min=None, bin_max=None):
  """The 7 metrics of every sample, for exact accumulation across batches.

  Args:
    gt: [B,H,W,1] GT depth (values outside (min_depth, max_depth) are invalid, e.g. 0).
    pred: [B,h,w,1] predicted depth, brought to (H, W) by `scale_output`.
    use_gt_scale: multiply each prediction by median(gt)/median(pred) over its valid pixels.
    min_depth, max_depth: validity range (strict) and clamp range of the prediction.
    crop: '' | 'garg' | 'eigen'.
    scale_output: 'resize' | 'top-center'.
    bin_min, bin_max: optional distance bin: metrics only over valid pixels with
      bin_min < gt < bin_max. The median scale still uses all valid pixels (it is a property of the
      image, not of the bin).

  Returns:
    metrics [B,7] in METRIC_NAMES order (0 for samples without pixels), valid [B] bool (the sample
    had at least one metric pixel), gt_pred_ratio [B] = median(gt)/median(pred) over the valid
    pixels (the factor GT scaling applies; 0 for samples without valid pixels).
  """
  sizes = check_shape('gt', gt, ('B', 'H', 'W', 1))
  b, height, width = sizes['B'], sizes['H'], sizes['W']
  check_shape('pred', pred, (b, 'h', 'w', 1))
  pred = scale_depth(pred, (height, width), scale_output).reshape(b, -1)
  gt = gt.reshape(b, -1)
  valid = (gt > min_depth) & (gt < max_depth) & crop_mask(height, width, crop).reshape(1, -1)
  median_gt = masked_lower_median(gt, valid)
  median_pred = masked_lower_median(pred, valid)
  ratio = jnp.where(median_pred != 0, median_gt / median_pred, 0.0)
  if use_gt_scale:
    # Same operation order as the reference: (pred · median_gt) / median_pred.
    pred = pred * median_gt[:, None] / median_pred[:, None]
  pred = jnp.clip(pred, min_depth, max_depth)

  in_bin = valid
  if bin_min is not None:
    in_bin = in_bin & (gt > bin_min)
  if bin_max is not None:
    in_bin = in_bin & (gt < bin_max)
  count = jnp.sum(in_bin, axis=1)
  has_pixels = count > 0
  count = jnp.maximum(count, 1)
  # Neutral values off the mask keep every intermediate (and any gradient) finite there.
  gt = jnp.where(in_bin, gt, 1.0)
  pred = jnp.where(in_bin, pred, 1.0)

  thresh = jnp.maximum(gt / pred, pred / gt)
  diff = gt - pred
  metrics = jnp.stack([
      _mean(jnp.abs(diff) / gt, in_bin, count),
      _mean(diff ** 2 / gt, in_bin, count),
      jnp.sqrt(_mean(diff ** 2, in_bin, count)),
      jnp.sqrt(_mean((jnp.log(gt) - jnp.log(pred)) ** 2, in_bin, count)),
      _mean((thresh < 1.25).astype(gt.dtype), in_bin, count),
      _mean((thresh < 1.25 ** 2).astype(gt.dtype), in_bin, count),
      _mean((thresh < 1.25 ** 3).astype(gt.dtype), in_bin, count),
  ], axis=1)
  metrics = jnp.where(has_pixels[:, None], metrics, 0.0)
  return metrics, has_pixels, ratio


def compute_depth_metrics(gt, pred, *, use_gt_scale, min_depth=0.0, max_depth=80.0, crop='',
                          scale_output='resize', bin_min=None, bin_max=None):
  """The reference's compute_depth_metrics: [7] metrics (METRIC_NAMES order).

  Summed over the samples that have valid pixels and divided by the full batch size. Arguments as
  `depth_metrics_per_sample`.
  """
  metrics, _, _ = depth_metrics_per_sample(
      gt, pred, use_gt_scale=use_gt_scale, min_depth=min_depth, max_depth=max_depth, crop=crop,
      scale_output=scale_output, bin_min=bin_min, bin_max=bin_max)
  return jnp.sum(metrics, axis=0) / metrics.shape[0]


def fuse_inv_depth(inv_depth, inv_depth_hat, method='mean'):
  """Pixel-wise fusion of two inverse depth maps: 'mean', 'max' or 'min'."""
  check_choice('method', method, FUSE_METHODS)
  if method == 'mean':
    return 0.5 * (inv_depth + inv_depth_hat)
  if method == 'max':
    return jnp.maximum(inv_depth, inv_depth_hat)
  return jnp.minimum(inv_depth, inv_depth_hat)


def _torch_linspace01(n):
  """torch.linspace(0, 1, n) in float32 (torch fills the two halves from opposite ends)."""
  step = np.float32(1.0 / (n - 1)) if n > 1 else np.float32(0.0)
  i = np.arange(n, dtype=np.float32)
  return np.where(i < n // 2, i * step, np.float32(1.0) - step * (n - 1 - i)).astype(np.float32)


def post_process_inv_depth(inv_depth, inv_depth_flipped, method='mean'):
  """Flip post-processing (Monodepth style) of inverse depth [B,H,W,1].

  inv_depth_flipped is the network output on the horizontally flipped image. The leftmost 5 % of the
  columns take the flipped-back prediction, the rightmost 5 % the plain one, the middle the fusion
  of both (`method`), with linear ramps over the next 5 % on each side.
  """
  check_shape('inv_depth', inv_depth, ('B', 'H', 'W', 1))
  check_shape('inv_depth_flipped', inv_depth_flipped, inv_depth.shape)
  inv_depth_hat = jnp.flip(inv_depth_flipped, axis=2)
  fused = fuse_inv_depth(inv_depth, inv_depth_hat, method)
  xs = _torch_linspace01(inv_depth.shape[2])
  mask = (np.float32(1.0) - np.clip(np.float32(20.0) * (xs - np.float32(0.05)), 0.0, 1.0))
  mask = jnp.asarray(mask.astype(np.float32)).reshape(1, 1, -1, 1)
  mask_hat = jnp.flip(mask, axis=2)
  return mask_hat * inv_depth + mask * inv_depth_hat + (1.0 - mask - mask_hat) * fused


def evaluate_depth(gt, inv_depth, inv_depth_flipped, **metric_kwargs):
  """The four rows of the reference's ModelWrapper.evaluate_depth.

  Args:
    gt: [B,H,W,1] GT depth at native resolution.
    inv_depth: [B,h,w,1] eval-mode network output; inv_depth_flipped: output on the flipped image.
    **metric_kwargs: min_depth, max_depth, crop, scale_output of `compute_depth_metrics`.

  Returns:
    {'depth', 'depth_pp', 'depth_gt', 'depth_pp_gt'} → [7] metrics (pp = flip post-processed with
    'mean', gt = GT median scaling).
  """
  depth = inv2depth(inv_depth)
  depth_pp = inv2depth(post_process_inv_depth(inv_depth, inv_depth_flipped, method='mean'))
  rows = {}
  for name, pred in (('depth', depth), ('depth_pp', depth_pp)):
    for suffix, use_gt_scale in (('', False), ('_gt', True)):
      rows[name + suffix] = compute_depth_metrics(gt, pred, use_gt_scale=use_gt_scale,
                                                  **metric_kwargs)
  return {k: rows[k] for k in ('depth', 'depth_pp', 'depth_gt', 'depth_pp_gt')}
