"""Geometry parity with the PyTorch reference (geom_pose.npz, geom_camera.npz) and properties."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_npz, nchw_to_nhwc
from packnet_jax import geometry as geo

ATOL = 1e-6
ATOL_WARP = 1e-5  # fixtures/README: coords and warps (f32 noise 4.4e-7 / 6.5e-6).


@pytest.fixture(scope='module')
def pose_fx():
  return load_npz('geom_pose.npz')


@pytest.fixture(scope='module')
def cam_fx():
  return load_npz('geom_camera.npz')


def test_pose_fixture(pose_fx):
  f = pose_fx
  np.testing.assert_allclose(jax.jit(geo.pose_vec_to_mat)(f['vec']), f['mat'], rtol=0, atol=ATOL)
  np.testing.assert_allclose(jax.jit(geo.euler_to_rotation)(f['vec'][:, 3:]), f['rot_only'], rtol=0, atol=ATOL)
  np.testing.assert_allclose(jax.jit(geo.invert_pose)(f['mat']), f['mat_inv'], rtol=0, atol=ATOL)
  np.testing.assert_allclose(jax.jit(geo.compose_poses)(f['compose_left'], f['mat']), f['compose_result'],
                             rtol=0, atol=ATOL)
  moved = jax.jit(geo.transform_points)(f['mat'], nchw_to_nhwc(f['points']))
  np.testing.assert_allclose(moved, nchw_to_nhwc(f['points_transformed']), rtol=0, atol=ATOL)


def test_invert_compose_identity(pose_fx):
  eye = geo.compose_poses(pose_fx['mat'], geo.invert_pose(pose_fx['mat']))
  np.testing.assert_allclose(eye, np.broadcast_to(np.eye(4), eye.shape), rtol=0, atol=1e-6)


def test_quaternion_is_rotation():
  q = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
  R = np.asarray(jax.jit(geo.quaternion_to_rotation)(q), np.float64)
  np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(R), 1., atol=1e-6)
  # q and −q (and any positive scaling) are the same rotation.
  np.testing.assert_allclose(geo.quaternion_to_rotation(-3. * q), R, atol=1e-6)


@pytest.mark.parametrize('axis', [0, 1, 2])
@pytest.mark.parametrize('angle', [0.3, -1.2, 2.5])
def test_quaternion_matches_euler_single_axis(axis, angle):
  q = np.zeros(4, np.float32)
  q[0], q[1 + axis] = np.cos(angle / 2), np.sin(angle / 2)
  euler = np.zeros(3, np.float32)
  euler[axis] = angle
  np.testing.assert_allclose(geo.quaternion_to_rotation(q), geo.euler_to_rotation(euler), atol=1e-6)


def test_pose_vec_quat_mode():
  vec = np.array([[1., 2., 3., 0., 0., 0.], [0., 0., 0., np.tan(0.25), 0., 0.]], np.float32)
  T = np.asarray(geo.pose_vec_to_mat(vec, rotation_mode='quat'))
  np.testing.assert_allclose(T[0], np.array([[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]]),
                             atol=1e-7)
  # (1, tan(a/2), 0, 0) normalised = rotation by a = 0.5 rad about x.
  np.testing.assert_allclose(T[1, :3, :3], geo.euler_to_rotation(np.array([0.5, 0., 0.])), atol=1e-6)


def test_camera_fixture(cam_fx):
  f = cam_fx
  K, K_ref, Tcw = f['K'], f['K_ref'], f['Tcw']
  depth = nchw_to_nhwc(f['depth'])
  scale = jax.jit(geo.scale_intrinsics, static_argnums=(1, 2))
  np.testing.assert_allclose(scale(K, 0.5, None), f['K_scaled_half'], rtol=0, atol=ATOL)
  np.testing.assert_allclose(scale(K, 0.5, 0.25), f['K_scaled_x05_y025'], rtol=0, atol=ATOL)
  np.testing.assert_allclose(scale(K, 0.3, 0.7), f['K_scale_intrinsics_x03_y07'], rtol=0, atol=ATOL)
  np.testing.assert_array_equal(scale(K, 1.0, None), K)  # Camera.scaled(1) returns the camera itself.
  np.testing.assert_allclose(jax.jit(geo.invert_intrinsics)(K), f['Kinv'], rtol=0, atol=ATOL)
  np.testing.assert_allclose(jax.jit(geo.pose_vec_to_mat)(f['pose_vec']), Tcw, rtol=0, atol=ATOL)

  recon = jax.jit(geo.reconstruct, static_argnames='frame')
  points_cam = recon(depth, K)
  np.testing.assert_allclose(points_cam, nchw_to_nhwc(f['points_cam']), rtol=0, atol=ATOL)
  np.testing.assert_allclose(recon(depth, K, None, frame='w'), nchw_to_nhwc(f['points_world_identity']),
                             rtol=0, atol=ATOL)
  # |points| reach 19, where one float32 ulp is 1.9e-6: allow ~1 ulp on top of the atol.
  np.testing.assert_allclose(recon(depth, K_ref, Tcw, frame='w'), nchw_to_nhwc(f['points_world_refcam']),
                             rtol=1.2e-7, atol=ATOL)

  proj = jax.jit(geo.project, static_argnames='frame')
  np.testing.assert_allclose(proj(points_cam, K), f['coords_cam'], rtol=0, atol=ATOL_WARP)
  np.testing.assert_allclose(proj(points_cam, K_ref, Tcw, frame='w'), f['coords_ref'], rtol=0, atol=ATOL_WARP)


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_view_synthesis_fixture(cam_fx, padding_mode):
  f = cam_fx
  synth = jax.jit(functools.partial(geo.view_synthesis, padding_mode=padding_mode))
  warped = synth(nchw_to_nhwc(f['ref_image']), nchw_to_nhwc(f['depth']), f['K_ref'], f['Tcw'], f['K'])
  np.testing.assert_allclose(warped, nchw_to_nhwc(f[f'warped_{padding_mode}']), rtol=0, atol=ATOL_WARP)


def test_warped_ones_is_bilinear_coverage(cam_fx):
  f = cam_fx
  ones = jnp.ones(f['ref_image'].shape[:1] + f['ref_image'].shape[2:] + (1,), jnp.float32)
  cover = jax.jit(geo.view_synthesis)(ones, nchw_to_nhwc(f['depth']), f['K_ref'], f['Tcw'], f['K'])
  np.testing.assert_allclose(cover, nchw_to_nhwc(f['warped_ones']), rtol=0, atol=ATOL_WARP)
  # Fully covered exactly where the fixture's valid mask says both coordinates are inside [-1, 1].
  valid = nchw_to_nhwc(f['valid_mask'])
  assert np.all(np.asarray(cover)[valid] > 1 - 1e-5)


def _identity_grid(h, w):
  y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing='ij')
  return np.stack([x, y], -1)[None].astype(np.float32)


def test_grid_sample_identity_and_half_pixel():
  img = np.random.default_rng(1).uniform(size=(1, 5, 7, 2)).astype(np.float32)
  sample = jax.jit(geo.grid_sample, static_argnames='padding_mode')
  np.testing.assert_allclose(sample(img, _identity_grid(5, 7)), img, atol=1e-6)
  # Half a pixel left of column 0: zeros padding halves it, border padding keeps it.
  grid = np.array([[[[-1 - 1 / 6, -1.]]]], np.float32)
  np.testing.assert_allclose(sample(img, grid)[0, 0, 0], 0.5 * img[0, 0, 0], atol=1e-6)
  np.testing.assert_allclose(sample(img, grid, padding_mode='border')[0, 0, 0], img[0, 0, 0], atol=1e-6)
  # Far outside (e.g. points behind the camera): zeros, no int overflow.
  far = np.array([[[[1e9, -3e9]]]], np.float32)
  np.testing.assert_array_equal(sample(img, far)[0, 0, 0], 0.)


def test_grid_sample_grad_wrt_grid():
  """d/dx of a horizontal ramp sampled between pixel centres is the ramp slope × (W−1)/2."""
  w = 6
  ramp = np.tile(np.arange(w, dtype=np.float32)[None, None, :, None] * 2., (1, 3, 1, 1))
  grad = jax.grad(lambda g: geo.grid_sample(ramp, g).sum())(np.array([[[[0.1, 0.3]]]], np.float32))
  np.testing.assert_allclose(grad[0, 0, 0], [2. * (w - 1) / 2, 0.], atol=1e-5)


def test_resizes():
  x = np.arange(2 * 4 * 6 * 1, dtype=np.float32).reshape(2, 4, 6, 1)
  # Align-corners bilinear keeps corners and is exact on linear ramps.
  ramp = np.broadcast_to(np.arange(9, dtype=np.float32)[None, None, :, None] * 0.5, (1, 3, 9, 1))
  out = jax.jit(geo.resize_bilinear_align_corners, static_argnums=1)(ramp, (2, 5))
  np.testing.assert_allclose(out[0, 0, :, 0], np.linspace(0, 4, 5), atol=1e-6)
  # torch legacy nearest keeps even rows/cols for ÷2, jax.image.resize would take odd ones.
  np.testing.assert_array_equal(geo.resize_nearest_torch(x, (2, 3)), x[:, ::2, ::2])
  np.testing.assert_array_equal(geo.resize_nearest_torch(x, (3, 4))[0, :, :, 0],
                                x[0][np.ix_([0, 1, 2], [0, 1, 3, 4])][..., 0])
  up = geo.upsample_nearest(x, 2)
  assert up.shape == (2, 8, 12, 1)
  np.testing.assert_array_equal(up[:, ::2, ::2], x)
  np.testing.assert_array_equal(up[:, 1::2, 1::2], x)


def test_image_pyramid_matches_reference():
  f = load_npz('smoothness.npz')
  image = nchw_to_nhwc(f['image_s0'])
  for i in range(1, 4):
    ref = nchw_to_nhwc(f[f'image_s{i}'])
    np.testing.assert_allclose(geo.resize_bilinear_align_corners(image, ref.shape[1:3]), ref, rtol=0, atol=1e-6)


def test_depth_inv_depth():
  depth = np.array([[0., -1., 1e-9, 2., 4.]], np.float32)
  np.testing.assert_allclose(geo.depth2inv(depth), [[0., 0., 1e6, 0.5, 0.25]])
  np.testing.assert_allclose(geo.inv2depth(np.array([0., 0.5], np.float32)), [1e6, 2.])
  out = geo.inv2depth([np.float32([1.]), np.float32([4.])])
  assert isinstance(out, list) and float(out[1][0]) == 0.25


def test_bad_shapes_raise():
  K = np.tile(np.eye(3, dtype=np.float32), (2, 1, 1))
  with pytest.raises(ValueError, match=r'K: expected shape \[B,3,3\], got \(2, 4, 4\)'):
    jax.jit(geo.invert_intrinsics)(np.zeros((2, 4, 4), np.float32))
  with pytest.raises(ValueError, match=r'depth: expected shape \[2,H,W,1\]'):
    geo.reconstruct(np.ones((2, 1, 5, 6), np.float32), K)
  with pytest.raises(ValueError, match=r'Tcw: expected shape \[2,4,4\]'):
    geo.project(np.ones((2, 5, 6, 3), np.float32), K, np.zeros((2, 3, 4), np.float32), frame='w')
  with pytest.raises(ValueError, match=r'grid: expected shape \[1,h,w,2\]'):
    geo.grid_sample(np.ones((1, 4, 4, 3), np.float32), np.zeros((1, 4, 4, 3), np.float32))
  with pytest.raises(ValueError, match=r"padding_mode: expected one of \('zeros', 'border'\)"):
    geo.grid_sample(np.ones((1, 4, 4, 3), np.float32), np.zeros((1, 4, 4, 2), np.float32), 'reflect')
  with pytest.raises(ValueError, match=r'vec: expected shape \[...,6\]'):
    geo.pose_vec_to_mat(np.zeros((2, 7), np.float32))
