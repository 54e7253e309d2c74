"""Rigid-body poses as homogeneous [..., 4, 4] matrices.

Convention (as in the reference, docs/reference.md §3.1): a pose `T_ab` maps points from
frame `b` into frame `a`: p_a = R p_b + t. In training, the pose predicted for
context c maps points from the *target* camera frame into the *context* camera
frame and is used as that context camera's `Tcw`.

Products are written as element-wise multiply-adds so that they run in full
float32 on every backend (accelerator matmuls may default to reduced precision);
per-pixel ones (`apply_3x3`, `transform_points`) are spelled out component by
component, which XLA fuses into one loop instead of a batched 3x3 dot per pixel.
"""
import jax.numpy as jnp

from packnet_jax.utils.checks import check_choice, check_shape


def matmul_f32(a, b):
  """Batched a @ b for small matrices ([..., n, k] @ [..., k, m]) in full f32."""
  return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def euler_to_rotation(angles):
  """Euler angles (x, y, z) in radians [..., 3] -> rotation R = Rx·Ry·Rz [..., 3, 3]."""
  if angles.shape[-1:] != (3,):
    raise ValueError(f'angles: expected shape [...,3], got {tuple(angles.shape)}')
  x, y, z = angles[..., 0], angles[..., 1], angles[..., 2]
  zeros, ones = jnp.zeros_like(x), jnp.ones_like(x)

  def mat(*rows):
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)

  cx, sx, cy, sy, cz, sz = jnp.cos(x), jnp.sin(x), jnp.cos(y), jnp.sin(y), jnp.cos(z), jnp.sin(z)
  rx = mat((ones, zeros, zeros), (zeros, cx, -sx), (zeros, sx, cx))
  ry = mat((cy, zeros, sy), (zeros, ones, zeros), (-sy, zeros, cy))
  rz = mat((cz, -sz, zeros), (sz, cz, zeros), (zeros, zeros, ones))
  return matmul_f32(matmul_f32(rx, ry), rz)


def quaternion_to_rotation(q):
  """Quaternion (w, x, y, z) [..., 4] -> rotation [..., 3, 3].

  The quaternion is normalised first, so any non-zero 4-vector is accepted.
  (w, x, y, z) = (cos(a/2), sin(a/2)·axis) rotates by angle a about `axis`.
  """
  if q.shape[-1:] != (4,):
    raise ValueError(f'q: expected shape [...,4], got {tuple(q.shape)}')
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
  rows = (
      (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
      (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
      (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
  )
  return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def rotation_translation_to_mat(rot, trans):
  """R [..., 3, 3] and t [..., 3] -> [[R, t], [0, 0, 0, 1]] [..., 4, 4]."""
  top = jnp.concatenate([rot, trans[..., :, None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0., 0., 0., 1.], top.dtype), top.shape[:-2] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def pose_vec_to_mat(vec, rotation_mode='euler'):
  """6-vector (tx, ty, tz, r0, r1, r2) [..., 6] -> pose matrix [..., 4, 4].

  Args:
    vec: translation followed by rotation parameters.
    rotation_mode: 'euler' (reference: angles x, y, z with R = Rx·Ry·Rz) or
      'quat' (r0..r2 are the vector part of the quaternion (1, r0, r1, r2),
      normalised before use).
  """
  check_choice('rotation_mode', rotation_mode, ('euler', 'quat'))
  if vec.shape[-1:] != (6,):
    raise ValueError(f'vec: expected shape [...,6], got {tuple(vec.shape)}')
  trans, rot_params = vec[..., :3], vec[..., 3:]
  if rotation_mode == 'euler':
    rot = euler_to_rotation(rot_params)
  else:
    ones = jnp.ones_like(rot_params[..., :1])
    rot = quaternion_to_rotation(jnp.concatenate([ones, rot_params], axis=-1))
  return rotation_translation_to_mat(rot, trans)


def invert_pose(T):
  """Inverse of a rigid pose [..., 4, 4]: [[Rᵀ, −Rᵀt], [0, 1]] (T_ab -> T_ba)."""
  if T.shape[-2:] != (4, 4):
    raise ValueError(f'T: expected shape [...,4,4], got {tuple(T.shape)}')
  rot_t = jnp.swapaxes(T[..., :3, :3], -1, -2)
  trans = -jnp.sum(rot_t * T[..., None, :3, 3], axis=-1)
  return rotation_translation_to_mat(rot_t, trans)


def compose_poses(A, B):
  """A @ B for poses [..., 4, 4]: T_ac = compose_poses(T_ab, T_bc)."""
  return matmul_f32(A, B)


def apply_3x3(M, v):
  """M [B, 3, 3] applied to vectors v [B, H, W, 3] (or [H, W, 3], broadcast) -> [B, H, W, 3].

  Three multiply-adds per component: a broadcast product summed over an axis becomes a batched dot
  with a 3x3 matrix per pixel in XLA (the largest geometry cost of the CPU train step), this form
  fuses with the surrounding element-wise ops.
  """
  m = M[:, None, None]
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  return jnp.stack([m[..., i, 0] * x + m[..., i, 1] * y + m[..., i, 2] * z for i in range(3)], axis=-1)


def transform_points(T, points):
  """Applies T [B, 4, 4] to points [B, H, W, 3]: R p + t -> [B, H, W, 3]."""
  dims = check_shape('T', T, ('B', 4, 4))
  check_shape('points', points, (dims['B'], 'H', 'W', 3))
  return apply_3x3(T[:, :3, :3], points) + T[:, None, None, :3, 3]
