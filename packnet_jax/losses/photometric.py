"""Multi-view photometric loss of PackNet-SfM (docs/reference.md §4.1), NHWC.

For each context image and scale, the context is warped into the target view
with the predicted depth and pose, compared with the target by a weighted
SSIM + L1 map, optionally clipped, optionally joined by the automask term
(unwarped context vs target), reduced over views ('min' or 'mean') and
averaged over scales; an edge-aware smoothness term is added.

Poses follow the reference convention: `poses[j]` maps points from the target
camera frame into context j's camera frame (T_ts, used as the context camera's
Tcw).
"""
import jax
import jax.numpy as jnp

from packnet_jax.geometry.camera import scale_intrinsics
from packnet_jax.utils.checks import check_choice, check_shape
from packnet_jax.geometry.depth import inv2depth
from packnet_jax.geometry.sampling import resize_bilinear_align_corners
from packnet_jax.geometry.view_synthesis import view_synthesis
from packnet_jax.losses.smoothness import smoothness_loss
from packnet_jax.losses.ssim import ssim_loss


def match_scales(image, inv_depths):
  """Image [B, H, W, C] resized (bilinear, align corners) to each inverse-depth
  map's size; maps of the image's size get the image itself."""
  return [resize_bilinear_align_corners(image, inv.shape[1:3]) for inv in inv_depths]


def warp_ref_image(inv_depths, ref_image, K, ref_K, pose, padding_mode='zeros'):
  """Warps `ref_image` [B, H, W, 3] into the target view at every scale.

  Scale i uses both intrinsics scaled by s = width(inv_depths[i]) / W for x
  *and* y (half-pixel rule), depth = 1 / max(inv, 1e-6) and the context image
  resized to the map's size. `pose` [B, 4, 4] maps target -> context frame.

  Returns:
    list of warped images [B, h_i, w_i, 3].
  """
  width = ref_image.shape[2]
  ref_images = match_scales(ref_image, inv_depths)
  warped = []
  for inv, ref_scaled in zip(inv_depths, ref_images):
    s = inv.shape[2] / float(width)
    warped.append(view_synthesis(ref_scaled, inv2depth(inv), scale_intrinsics(ref_K, s), pose,
                                 scale_intrinsics(K, s), padding_mode=padding_mode))
  return warped


def clip_photometric(photo, clip_loss, groups=1):
  """Clamps a map from above at mean + clip·std (unbiased), the statistics taken
  over all elements of each of `groups` equal slices of the batch axis and
  treated as constants (the reference converts them to a Python float)."""
  stats = jax.lax.stop_gradient(photo.reshape(groups, -1))
  limit = jnp.mean(stats, axis=1) + clip_loss * jnp.std(stats, axis=1, ddof=1)
  grouped = photo.reshape((groups, -1) + photo.shape[1:])
  return jnp.minimum(grouped, limit.reshape((groups,) + (1,) * photo.ndim)).reshape(photo.shape)


def calc_photometric_maps(estimates, images, ssim_loss_weight=0.85, C1=1e-4, C2=9e-4, clip_loss=0.0,
                          groups=1):
  """Per-scale photometric error maps between estimates and images (lists).

  With ssim_loss_weight > 0 the map is w·mean_c(SSIM loss) + (1−w)·mean_c|Δ|
  [B, h, w, 1]; with weight 0 it is the raw per-channel |Δ| [B, h, w, 3].
  With clip_loss > 0 each map is clipped by `clip_photometric`; `groups` > 1
  when several maps are stacked along the batch axis (each clipped on its own).
  """
  def photometric_map(est, img):
    l1 = jnp.abs(est - img)
    if ssim_loss_weight > 0.0:
      ssim_term = jnp.mean(ssim_loss(est, img, C1, C2), axis=-1, keepdims=True)
      return ssim_loss_weight * ssim_term + (1 - ssim_loss_weight) * jnp.mean(l1, axis=-1, keepdims=True)
    return l1

  # Recomputed in the backward pass from its two inputs: the SSIM statistics of every view
  # and scale (several full-resolution stacks) are cheap to redo and too large to keep.
  photometric_map = jax.checkpoint(photometric_map)
  maps = []
  for est, img in zip(estimates, images):
    photo = photometric_map(est, img)
    maps.append(clip_photometric(photo, clip_loss, groups) if clip_loss > 0.0 else photo)
  return maps


def _min_first(candidates):
  """Element-wise minimum of equal-shape arrays, as torch.min over them stacked.

  The first minimum wins ties and a NaN wins over numbers (the value torch.min
  returns, and where its gradient goes): a running minimum of comparisons and
  selects, which XLA fuses into one loop, instead of stacking the candidates and
  gathering at their argmin.
  """
  best = candidates[0]
  for candidate in candidates[1:]:
    take = ~jnp.isnan(best) & (jnp.isnan(candidate) | (candidate < best))
    best = jnp.where(take, candidate, best)
  return best


def reduce_photometric_maps(views, reduce_op='min'):
  """Average over scales of each scale's reduced maps.

  Args:
    views: per scale, the list of the views' maps [B, h, w, c] in the
      reference order (ctx0 warped, [ctx0 unwarped], ctx1 warped, ...).
    reduce_op: 'min': the views' maps concatenated along channels, per-pixel
      minimum (first minimum on ties), mean of that; 'mean': average of the
      maps' means (= mean of the stack, the maps have equal size).
  """
  check_choice('photometric_reduce_op', reduce_op, ('min', 'mean'))
  per_scale = []
  for maps in views:
    if reduce_op == 'min':
      channels = [m[..., k] for m in maps for k in range(m.shape[-1])]  # view-major, as the concatenation
      per_scale.append(jnp.mean(_min_first(channels)))
    else:
      per_scale.append(jnp.mean(jnp.concatenate(maps, axis=0)))
  return sum(per_scale) / len(per_scale)


def _repeat(x, n):
  """n copies of x stacked along the batch axis."""
  return jnp.concatenate([x] * n, axis=0)


def _unwarped_maps(ref_images, images, inv_depths, num_ctx, map_options):
  """Per scale, the automask maps (unwarped contexts vs target), [num_ctx·B, h, w, c].

  They depend on the images only, not on the networks, so they are kept out
  of the differentiated stack, and scales of equal size share one map (with
  upsampled depth maps every scale is full resolution: one map, not four).
  Each map is the same per-pixel arithmetic as in a stack with the warped
  views, so the values are unchanged.
  """
  by_size = {}
  for ref_scaled, image in zip(match_scales(ref_images, inv_depths), images):
    size = ref_scaled.shape[1:3]
    if size not in by_size:
      by_size[size] = calc_photometric_maps([ref_scaled], [_repeat(image, num_ctx)], **map_options)[0]
  return [by_size[inv.shape[1:3]] for inv in inv_depths]


def _check_inputs(image, contexts, inv_depths, K, ref_K, poses, num_scales):
  b = check_shape('image', image, ('B', 'H', 'W', 3))['B']
  for j, ctx in enumerate(contexts):
    check_shape(f'contexts[{j}]', ctx, image.shape)
  if len(poses) != len(contexts):
    raise ValueError(f'poses: expected one [B,4,4] pose per context ({len(contexts)}), got {len(poses)}')
  for j, pose in enumerate(poses):
    check_shape(f'poses[{j}]', pose, (b, 4, 4))
  check_shape('K', K, (b, 3, 3))
  check_shape('ref_K', ref_K, (b, 3, 3))
  if len(inv_depths) < num_scales:
    raise ValueError(f'inv_depths: expected at least num_scales={num_scales} maps, got {len(inv_depths)}')
  for i, inv in enumerate(inv_depths):
    check_shape(f'inv_depths[{i}]', inv, (b, 'h', 'w', 1))


def multiview_photometric_loss(image, contexts, inv_depths, K, ref_K, poses, *, num_scales=4,
                               ssim_loss_weight=0.85, smooth_loss_weight=0.001, C1=1e-4, C2=9e-4,
                               photometric_reduce_op='min', clip_loss=0.0, padding_mode='zeros',
                               automask_loss=True):
  """Self-supervised multi-view photometric loss.

  Args:
    image: target image [B, H, W, 3].
    contexts: list of context images [B, H, W, 3].
    inv_depths: list of predicted inverse depths [B, h_i, w_i, 1] (full
      resolution first; the first `num_scales` are used).
    K: target intrinsics [B, 3, 3] (for the full-resolution image).
    ref_K: context intrinsics [B, 3, 3].
    poses: list of target -> context poses [B, 4, 4], one per context.
    num_scales, ssim_loss_weight, smooth_loss_weight, C1, C2,
    photometric_reduce_op ('min'|'mean'), clip_loss, padding_mode
    ('zeros'|'border'), automask_loss: static options; the keyword defaults are
      the reference *config* defaults (docs/reference.md §7), not its constructor defaults.
    (The reference's progressive_scaling has no effect there, docs/reference.md §4.6, and no
    parameter here.)

  Returns:
    (loss, metrics): scalar total loss and {'photometric_loss',
    'smoothness_loss'}. Quirk kept from the reference: metrics
    'photometric_loss' equals the *total* loss (photometric + smoothness).
  """
  check_choice('photometric_reduce_op', photometric_reduce_op, ('min', 'mean'))
  check_choice('padding_mode', padding_mode, ('zeros', 'border'))
  _check_inputs(image, contexts, inv_depths, K, ref_K, poses, num_scales)
  inv_depths = list(inv_depths[:num_scales])
  batch_size, num_ctx = image.shape[0], len(contexts)
  images = match_scales(image, inv_depths)
  # All contexts in one pass (a smaller traced graph): stacked along the batch axis, context-major.
  ref_images = jnp.concatenate(contexts, axis=0)
  estimates = warp_ref_image([_repeat(inv, num_ctx) for inv in inv_depths], ref_images, _repeat(K, num_ctx),
                             _repeat(ref_K, num_ctx), jnp.concatenate(poses, axis=0), padding_mode)
  map_options = dict(ssim_loss_weight=ssim_loss_weight, C1=C1, C2=C2, clip_loss=clip_loss, groups=num_ctx)
  maps = calc_photometric_maps(estimates, [_repeat(im, num_ctx) for im in images], **map_options)
  stacks = [maps]
  if automask_loss:  # Per context: warped view, then the unwarped context, the reference's order.
    stacks.append(_unwarped_maps(ref_images, images, inv_depths, num_ctx, map_options))
  views = [[stack[i][j * batch_size:(j + 1) * batch_size] for j in range(num_ctx) for stack in stacks]
           for i in range(len(inv_depths))]
  loss = reduce_photometric_maps(views, photometric_reduce_op)
  smooth = jnp.zeros((), loss.dtype)
  if smooth_loss_weight > 0.0:
    smooth = smoothness_loss(inv_depths, images, smooth_loss_weight, num_scales)
  loss = loss + smooth
  return loss, {'photometric_loss': loss, 'smoothness_loss': smooth}
