"""View synthesis: warp a reference image into the target view (docs/reference.md §3.2)."""
from packnet_jax.geometry.camera import project, reconstruct
from packnet_jax.utils.checks import check_shape
from packnet_jax.geometry.sampling import grid_sample


def view_synthesis(ref_image, depth, ref_K, ref_Tcw, K, padding_mode='zeros'):
  """Synthesises the target view from `ref_image` [B, H, W, C].

  Each target pixel is lifted with its `depth` [B, h, w, 1] and the target
  intrinsics `K` [B, 3, 3] (the target camera is the world frame), moved into
  the reference camera with `ref_Tcw` [B, 4, 4] (target -> reference), projected
  with `ref_K` and sampled bilinearly from `ref_image` (align_corners=True).
  The reference image may have a different size than the depth map: the grid
  is normalised by the depth map's size, as in the reference.

  Returns:
    warped image [B, h, w, C]. No validity mask is returned (warp an all-ones
    image to get the bilinear coverage).
  """
  b = check_shape('ref_image', ref_image, ('B', 'H', 'W', 'C'))['B']
  check_shape('ref_Tcw', ref_Tcw, (b, 4, 4))
  world_points = reconstruct(depth, K, frame='c')  # Target camera = identity pose.
  grid = project(world_points, ref_K, ref_Tcw, frame='w')
  return grid_sample(ref_image, grid, padding_mode=padding_mode)
