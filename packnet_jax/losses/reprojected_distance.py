"""Reprojected-distance loss (semi-supervised depth, Guizilini et al., CoRL 2019).

Instead of comparing depths directly, the GT and the predicted depth are both lifted to 3-D with the
same intrinsics, moved by the same target → context motion and projected back; the loss is the mean
absolute distance between the two projected coordinate maps (normalised [-1, 1] grid units). Depth
errors thus count by how far they would displace the pixel in the other view, which discounts
far-away errors the way the photometric loss sees them.

Not in the reference master (see fixtures/README, "Reprojected-distance loss"): this follows the
community PR's algorithm after its two minimal fixes, and adds a GT validity mask and multiple
scales.
"""
import jax.numpy as jnp

from packnet_jax.geometry.camera import project, reconstruct, scale_intrinsics
from packnet_jax.utils.checks import check_shape
from packnet_jax.geometry.depth import inv2depth
from packnet_jax.geometry.pose import invert_pose, transform_points
from packnet_jax.losses.supervised import as_scale_list, masked_mean, match_gt_scales


def reprojected_coords(inv_depth, K, T_ts):
  """Grid coordinates [B,H,W,2] of every target pixel seen from the context camera.

  depth = 1/clamp(inv_depth, 1e-6) is lifted with K⁻¹, moved by T_st = T_ts⁻¹ and projected with K
  (projected Z clamped at 1e-5).
  """
  points = reconstruct(inv2depth(inv_depth), K)
  return project(transform_points(invert_pose(T_ts), points), K)


def reprojected_distance_loss(pred_inv_depths, gt_inv_depth, K, T_ts, num_scales=None):
  """Reprojected-distance loss over one or more predicted scales.

  Args:
    pred_inv_depths: [B,h,w,1] predicted inverse depth, or a list of them (full resolution first).
    gt_inv_depth: [B,H,W,1] GT inverse depth; pixels with gt_inv_depth > 0 are valid (0 = no lidar).
    K: [B,3,3] intrinsics at the GT resolution (H, W).
    T_ts: [B,4,4] transform of points from the context (source) frame to the target frame, as in
      the PR; the target points are moved by its inverse T_st (target → context) before projecting.
      With the networks' poses (target → context, docs/reference.md §3.1) pass invert_pose(pose).
    num_scales: number of predicted scales used (None = all of them).

  Returns:
    Scalar loss. How the valid mask enters: at each scale, GT is brought to the prediction's size
    with torch-legacy nearest (like the supervised loss) and K with `scale_intrinsics` (half-pixel
    rule); the loss of that scale is the sum over valid pixels and both coordinates of
    |coords_gt − coords_est| divided by 2·(number of valid pixels), i.e. the mean over the valid
    pixels and both coordinates (with dense GT this is the PR's plain mean). Invalid pixels
    contribute neither value nor gradient. The result is the average of the per-scale losses.
  """
  gt_inv_depth = jnp.asarray(gt_inv_depth)
  b = check_shape('gt_inv_depth', gt_inv_depth, ('B', 'H', 'W', 1))['B']
  check_shape('K', K, (b, 3, 3))
  check_shape('T_ts', T_ts, (b, 4, 4))
  height, width = gt_inv_depth.shape[1:3]
  preds = as_scale_list(pred_inv_depths, num_scales, b)
  losses = []
  for pred, gt in zip(preds, match_gt_scales(gt_inv_depth, preds)):
    h, w = pred.shape[1:3]
    K_s = scale_intrinsics(K, w / width, h / height)
    valid = gt > 0.0
    # Invalid GT pixels get a neutral depth so their (discarded) coordinates stay finite.
    coords_gt = reprojected_coords(jnp.where(valid, gt, 1.0), K_s, T_ts)
    coords_est = reprojected_coords(pred, K_s, T_ts)
    mask = jnp.broadcast_to(valid, coords_gt.shape)
    losses.append(masked_mean(jnp.abs(coords_gt - coords_est), mask))
  return sum(losses) / len(losses)
