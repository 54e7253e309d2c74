"""Pure-JAX geometry on NHWC arrays: poses, pinhole camera, sampling, warping."""
from packnet_jax.geometry.camera import invert_intrinsics, pixel_grid, project, reconstruct, scale_intrinsics
from packnet_jax.geometry.depth import depth2inv, inv2depth
from packnet_jax.geometry.pose import (compose_poses, euler_to_rotation, invert_pose, pose_vec_to_mat,
                                       quaternion_to_rotation, transform_points)
from packnet_jax.geometry.sampling import grid_sample, resize_bilinear_align_corners, resize_nearest_torch
from packnet_jax.geometry.view_synthesis import view_synthesis

__all__ = [
    'compose_poses', 'depth2inv', 'euler_to_rotation', 'grid_sample',
    'inv2depth', 'invert_intrinsics', 'invert_pose', 'pixel_grid', 'pose_vec_to_mat', 'project',
    'quaternion_to_rotation', 'reconstruct', 'resize_bilinear_align_corners', 'resize_nearest_torch',
    'scale_intrinsics', 'transform_points', 'view_synthesis',
]
