"""Pinhole camera: intrinsics scaling, back-projection and projection (NHWC).

Conventions (docs/reference.md §3.2):
  * Pixel (x, y) with integer coordinates is the centre of column x, row y.
  * `Tcw` maps world points into this camera's frame (p_c = Tcw p_w); `None`
    means identity. Frame 'c' = camera frame, 'w' = world frame.
  * `project` returns a [B, H, W, 2] grid (x first) normalised to [-1, 1] with
    align-corners semantics (-1 = centre of column 0, +1 = centre of W-1), the
    input expected by `grid_sample`.
"""
import jax.numpy as jnp

from packnet_jax.utils.checks import check_choice, check_shape
from packnet_jax.geometry.pose import apply_3x3, invert_pose, transform_points

_MIN_Z = 1e-5  # Reference clamp on projected depth; no other masking.


def _check_K(K, name='K'):
  return check_shape(name, K, ('B', 3, 3))['B']


def _as_K(K):
  """Validated intrinsics as a float32 array, as the reference's `K.float()`.

  float64 is kept only when it survives `jnp.asarray` (i.e. with jax x64 on),
  so double-precision checks stay double throughout.
  """
  _check_K(K)
  K = jnp.asarray(K)
  return K if K.dtype == jnp.float64 else K.astype(jnp.float32)


def scale_intrinsics(K, sx, sy=None):
  """Scales intrinsics [B, 3, 3] for an image resized by (sx, sy).

  Half-pixel rule of the reference camera: fx·sx, fy·sy,
  cx' = (cx + 0.5)·sx − 0.5, cy' = (cy + 0.5)·sy − 0.5. (The data pipeline uses
  a different rule without the half-pixel shift.) As `Camera.scaled`, K is
  returned unchanged when both scales are exactly 1.
  """
  K = _as_K(K)
  sy = sx if sy is None else sy
  if isinstance(sx, (int, float)) and isinstance(sy, (int, float)) and sx == 1 and sy == 1:
    return K
  fx, fy = K[:, 0, 0] * sx, K[:, 1, 1] * sy
  cx, cy = (K[:, 0, 2] + 0.5) * sx - 0.5, (K[:, 1, 2] + 0.5) * sy - 0.5
  return K.at[:, 0, 0].set(fx).at[:, 1, 1].set(fy).at[:, 0, 2].set(cx).at[:, 1, 2].set(cy)


def invert_intrinsics(K):
  """K⁻¹ as the reference builds it: copy of K with [0,0]=1/fx, [1,1]=1/fy,
  [0,2]=−cx/fx, [1,2]=−cy/fy (skew and last row kept as in K)."""
  K = _as_K(K)
  fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
  return K.at[:, 0, 0].set(1. / fx).at[:, 1, 1].set(1. / fy).at[:, 0, 2].set(
      -cx / fx).at[:, 1, 2].set(-cy / fy)


def pixel_grid(height, width, dtype=jnp.float32):
  """Homogeneous pixel coordinates [H, W, 3] = (x, y, 1)."""
  y, x = jnp.meshgrid(jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype),
                      indexing='ij')
  return jnp.stack([x, y, jnp.ones_like(x)], axis=-1)


def reconstruct(depth, K, Tcw=None, frame='c'):
  """Lifts a depth map [B, H, W, 1] to 3-D points [B, H, W, 3].

  Points are K⁻¹·(x, y, 1)·depth in the camera frame; with frame='w' they are
  moved to the world frame with Tcw⁻¹.
  """
  check_choice('frame', frame, ('c', 'w'))
  b = _check_K(K)
  check_shape('depth', depth, (b, 'H', 'W', 1))
  _, h, w, _ = depth.shape
  rays = apply_3x3(invert_intrinsics(K).astype(depth.dtype), pixel_grid(h, w, depth.dtype))
  points = rays * depth
  if frame == 'w' and Tcw is not None:
    check_shape('Tcw', Tcw, (b, 4, 4))
    points = transform_points(invert_pose(Tcw), points)
  return points


def project(points, K, Tcw=None, frame='c'):
  """Projects points [B, H, W, 3] to a normalised sampling grid [B, H, W, 2].

  With frame='w' the points are first moved into the camera frame with Tcw.
  Projected depth is clamped at 1e-5 (points behind the camera land far
  outside the image, as in the reference).
  """
  check_choice('frame', frame, ('c', 'w'))
  b = _check_K(K)
  check_shape('points', points, (b, 'H', 'W', 3))
  _, h, w, _ = points.shape
  if frame == 'w' and Tcw is not None:
    check_shape('Tcw', Tcw, (b, 4, 4))
    points = transform_points(Tcw, points)
  pix = apply_3x3(K.astype(points.dtype), points)
  z = jnp.maximum(pix[..., 2], _MIN_Z)
  x_norm = 2 * (pix[..., 0] / z) / (w - 1) - 1.
  y_norm = 2 * (pix[..., 1] / z) / (h - 1) - 1.
  return jnp.stack([x_norm, y_norm], axis=-1)
