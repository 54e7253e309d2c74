"""Geometry parity with the PyTorch reference (geom_pose.npz, geom_camera.npz) and properties."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.fixtures import load_npz, nchw_to_nhwc
from lib import noise
from packnet_jax import geometry as geo

# Tolerances from the float32 noise of each computation (max |ours_f32 − ours_f64|, and the reference's
# |ours_f64 − ref|), measured by `python tools/measure_noise.py --only test_geometry`:
ATOL = 1e-6             # poses: noise ≤ 1.4e-7 (≥ 7x)
ATOL_INTRINSICS = 8e-6  # scaled K: noise 1.1e-6 (7x; values ~20, where 1 ulp is 1.9e-6)
ATOL_POINTS = 1.5e-5    # reconstructed points (|p| up to 19): noise 2.2e-6, reference 2.5e-6 (6x)
ATOL_COORDS = 1e-5      # projected coordinates: noise 5.8e-7 (17x)
ATOL_WARP = 5e-5        # bilinear warps: noise 7.3e-6, reference 7.7e-6 (6.5x)
ATOL_PYRAMID = 8e-6     # align-corners resizes: noise 1.3e-6 (6x)


@pytest.fixture(scope='module')
def pose_fx():
  return load_npz('geom_pose.npz')


@pytest.fixture(scope='module')
def cam_fx():
  return load_npz('geom_camera.npz')


@noise.parity_check()
def check_pose(dtype):
  f = noise.cast_floats(load_npz('geom_pose.npz'), dtype)
  C = functools.partial(noise.Comparison, atol=ATOL)
  return [
      C('pose_vec_to_mat', jax.jit(geo.pose_vec_to_mat)(f['vec']), f['mat']),
      C('euler_to_rotation', jax.jit(geo.euler_to_rotation)(f['vec'][:, 3:]), f['rot_only']),
      C('invert_pose', jax.jit(geo.invert_pose)(f['mat']), f['mat_inv']),
      C('compose_poses', jax.jit(geo.compose_poses)(f['compose_left'], f['mat']), f['compose_result']),
      C('transform_points', jax.jit(geo.transform_points)(f['mat'], nchw_to_nhwc(f['points'])),
        nchw_to_nhwc(f['points_transformed'])),
  ]


def test_pose_fixture():
  noise.assert_all(check_pose(np.float32))


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


@noise.parity_check()
def check_camera(dtype):
  f = noise.cast_floats(load_npz('geom_camera.npz'), dtype)
  K, K_ref, Tcw = f['K'], f['K_ref'], f['Tcw']
  depth = nchw_to_nhwc(f['depth'])
  C = functools.partial(noise.Comparison, atol=ATOL)
  scale = jax.jit(geo.scale_intrinsics, static_argnums=(1, 2))
  recon = jax.jit(geo.reconstruct, static_argnames='frame')
  proj = jax.jit(geo.project, static_argnames='frame')
  points_cam = recon(depth, K)
  return [
      C('K_scaled_half', scale(K, 0.5, None), f['K_scaled_half'], atol=ATOL_INTRINSICS),
      C('K_scaled_x05_y025', scale(K, 0.5, 0.25), f['K_scaled_x05_y025'], atol=ATOL_INTRINSICS),
      C('K_scaled_x03_y07', scale(K, 0.3, 0.7), f['K_scale_intrinsics_x03_y07'], atol=ATOL_INTRINSICS),
      C('Kinv', jax.jit(geo.invert_intrinsics)(K), f['Kinv']),
      C('pose_vec_to_mat', jax.jit(geo.pose_vec_to_mat)(f['pose_vec']), Tcw),
      C('points_cam', points_cam, nchw_to_nhwc(f['points_cam']), atol=ATOL_POINTS),
      C('points_world_identity', recon(depth, K, None, frame='w'), nchw_to_nhwc(f['points_world_identity']),
        atol=ATOL_POINTS),
      C('points_world_refcam', recon(depth, K_ref, Tcw, frame='w'), nchw_to_nhwc(f['points_world_refcam']),
        atol=ATOL_POINTS),
      C('coords_cam', proj(points_cam, K), f['coords_cam'], atol=ATOL_COORDS),
      C('coords_ref', proj(points_cam, K_ref, Tcw, frame='w'), f['coords_ref'], atol=ATOL_COORDS),
  ]


def test_camera_fixture(cam_fx):
  noise.assert_all(check_camera(np.float32))
  # Camera.scaled(1) returns the camera itself.
  np.testing.assert_array_equal(jax.jit(geo.scale_intrinsics, static_argnums=(1, 2))(cam_fx['K'], 1.0, None),
                                cam_fx['K'])


@noise.parity_check(params=['zeros', 'border', 'ones'])
def check_view_synthesis(dtype, padding_mode):
  f = noise.cast_floats(load_npz('geom_camera.npz'), dtype)
  if padding_mode == 'ones':  # the warp of a constant 1 image is the bilinear coverage
    image, padding_mode, want = np.ones_like(nchw_to_nhwc(f['ref_image'])[..., :1]), 'zeros', f['warped_ones']
  else:
    image, want = nchw_to_nhwc(f['ref_image']), f[f'warped_{padding_mode}']
  synth = jax.jit(functools.partial(geo.view_synthesis, padding_mode=padding_mode))
  warped = synth(image, nchw_to_nhwc(f['depth']), f['K_ref'], f['Tcw'], f['K'])
  return [noise.Comparison('warped', warped, nchw_to_nhwc(want), atol=ATOL_WARP)]


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_view_synthesis_fixture(padding_mode):
  noise.assert_all(check_view_synthesis(np.float32, padding_mode))


def test_warped_ones_is_bilinear_coverage(cam_fx):
  [cover] = check_view_synthesis(np.float32, 'ones')
  noise.assert_all([cover])
  # Fully covered exactly where the fixture's valid mask says both coordinates are inside [-1, 1].
  valid = nchw_to_nhwc(cam_fx['valid_mask'])
  assert np.all(np.asarray(cover.ours)[valid] > 1 - ATOL_WARP)


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


@noise.parity_check()
def check_image_pyramid(dtype):
  f = noise.cast_floats(load_npz('smoothness.npz'), dtype)
  image = nchw_to_nhwc(f['image_s0'])
  resize = jax.jit(geo.resize_bilinear_align_corners, static_argnums=1)
  return [noise.Comparison(f'image_s{i}', resize(image, f[f'image_s{i}'].shape[2:4]),
                           nchw_to_nhwc(f[f'image_s{i}']), atol=ATOL_PYRAMID) for i in range(1, 4)]


def test_image_pyramid_matches_reference():
  noise.assert_all(check_image_pyramid(np.float32))


def test_apply_3x3_is_a_per_pixel_matrix_product():
  rng = np.random.RandomState(0)
  M, v = rng.randn(2, 3, 3), rng.randn(2, 4, 5, 3)
  with jax.enable_x64():
    got = geo.pose.apply_3x3(jnp.asarray(M), jnp.asarray(v))
    # A [H, W, 3] field (the pixel grid) is shared by every batch entry.
    got_shared = geo.pose.apply_3x3(jnp.asarray(M), jnp.asarray(v[0]))
  assert got.dtype == np.float64
  np.testing.assert_allclose(got, np.einsum('bij,bhwj->bhwi', M, v), rtol=1e-14, atol=1e-14)
  np.testing.assert_allclose(got_shared, np.einsum('bij,hwj->bhwi', M, v[0]), rtol=1e-14, atol=1e-14)


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
