"""Velocity supervision loss (docs/reference.md §4.4).

Weak metric-scale supervision: the length of each predicted translation (target → context) should
equal the length of the ground-truth translation, e.g. from GPS/odometry speed × time. Rotation is
ignored.
"""
import jax.numpy as jnp


def _check_poses(name, poses):
  if poses.ndim != 4 or poses.shape[-2:] != (4, 4):
    raise ValueError(f'{name}: expected shape [B,N,4,4], got {tuple(poses.shape)}')


def velocity_loss(pred_poses, gt_pose_context):
  """Mean absolute difference of the translation norms.

  Args:
    pred_poses: [B,N,4,4] predicted target → context poses (N contexts).
    gt_pose_context: [B,N,4,4] ground-truth poses, same layout.

  Returns:
    Scalar: mean over contexts of mean over the batch of | ‖t_pred‖₂ − ‖t_gt‖₂ |.
  """
  pred_poses = jnp.asarray(pred_poses)
  gt_pose_context = jnp.asarray(gt_pose_context)
  _check_poses('pred_poses', pred_poses)
  _check_poses('gt_pose_context', gt_pose_context)
  if pred_poses.shape != gt_pose_context.shape:
    raise ValueError(f'gt_pose_context: expected shape {tuple(pred_poses.shape)} (as pred_poses), '
                     f'got {tuple(gt_pose_context.shape)}')
  pred_speed = jnp.linalg.norm(pred_poses[..., :3, 3], axis=-1)  # [B,N]
  gt_speed = jnp.linalg.norm(gt_pose_context[..., :3, 3], axis=-1)
  # Per-context batch mean first, then the mean over contexts (the reference's order).
  return jnp.mean(jnp.mean(jnp.abs(pred_speed - gt_speed), axis=0))
