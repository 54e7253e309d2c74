"""Reprojected-distance loss: parity with pr_reprojected_distance.npz, mask, scales, properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lib.fixtures import load_npz, nchw_to_nhwc
from lib import noise

from packnet_jax.geometry.sampling import resize_nearest_torch
from packnet_jax.losses.reprojected_distance import reprojected_coords, reprojected_distance_loss

_FIX = load_npz('pr_reprojected_distance.npz')
_GT = nchw_to_nhwc(_FIX['inv_depth_gt'])
_EST = nchw_to_nhwc(_FIX['inv_depth_est'])
_K, _T = _FIX['K'], _FIX['T_ts']
_loss = jax.jit(reprojected_distance_loss, static_argnames='num_scales')


RTOL_LOSS = 1e-5
ATOL_COORDS = 1e-5


@noise.parity_check()
def check_loss_and_coordinates(dtype):
  est, gt, K, T = noise.cast_floats((_EST, _GT, _K, _T), dtype)
  coords = jax.jit(reprojected_coords)
  return [noise.Comparison('loss', _loss(est, gt, K, T), _FIX['loss'], rtol=RTOL_LOSS),
          noise.Comparison('coords_gt', coords(gt, K, T), _FIX['coords_gt'], atol=ATOL_COORDS),
          noise.Comparison('coords_est', coords(est, K, T), _FIX['coords_est'], atol=ATOL_COORDS)]


def test_matches_fixture_loss_and_coordinates():
  noise.assert_all(check_loss_and_coordinates(np.float32))


def test_identical_depth_gives_exactly_zero():
  assert float(_loss(_GT, _GT, _K, _T)) == 0.0
  assert float(_loss([_GT, resize_nearest_torch(_GT, (24, 40))], _GT, _K, _T)) == 0.0


def test_grows_monotonically_with_scale_error():
  losses = [float(_loss(_GT / s, _GT, _K, _T)) for s in (1.0, 1.1, 1.3, 2.0)]  # pred depth = s · gt
  assert losses[0] == 0.0
  assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_mask_is_a_mean_over_valid_pixels_and_both_coordinates():
  valid = np.zeros_like(_GT, bool)
  valid[:, ::3, ::2] = True
  gt_sparse = np.where(valid, _GT, 0.0).astype(np.float32)
  diff = np.abs(_FIX['coords_gt'] - _FIX['coords_est'])  # [B,H,W,2]
  want = diff[np.broadcast_to(valid, diff.shape)].mean()
  np.testing.assert_allclose(np.asarray(_loss(_EST, gt_sparse, _K, _T)), want, rtol=1e-5)
  # Dense GT: the mask keeps everything, i.e. the PR's plain mean.
  np.testing.assert_allclose(_FIX['loss'], diff.mean(), rtol=1e-6)


def test_gradient_only_on_valid_pixels():
  gt_sparse = np.where((np.arange(80) % 4 == 0)[:, None], _GT, 0.0).astype(np.float32)
  grad = np.asarray(jax.jit(jax.grad(lambda p: reprojected_distance_loss(p, gt_sparse, _K, _T)))(
      jnp.asarray(_EST)))
  assert np.all(np.isfinite(grad))
  assert np.all(grad[gt_sparse <= 0] == 0)
  assert np.any(grad[gt_sparse > 0] != 0)


def _translation_case(height, width, tx):
  """Constant GT depth 10 m, prediction 20 m, pure x translation: closed-form coordinate shift."""
  K = np.array([[[0.6 * width, 0, 0.5 * width], [0, 0.6 * width, 0.5 * height], [0, 0, 1]]],
               np.float32)
  T = np.eye(4, dtype=np.float32)[None].copy()
  T[0, 0, 3] = tx
  gt = np.full((1, height, width, 1), 1 / 10, np.float32)
  return K, T, gt


def test_scales_use_scaled_intrinsics():
  height, width, tx = 16, 24, 0.5
  K, T, gt = _translation_case(height, width, tx)
  full = np.full((1, height, width, 1), 1 / 20, np.float32)
  half = np.full((1, height // 2, width // 2, 1), 1 / 20, np.float32)
  # x shifts by fx·tx·|1/10 − 1/20| pixels, y not at all; normalised by 2/(W−1); mean over 2 coords.
  fx = K[0, 0, 0]
  want_full = 0.5 * (2 * fx * tx * 0.05 / (width - 1))
  want_half = 0.5 * (2 * (fx / 2) * tx * 0.05 / (width / 2 - 1))
  np.testing.assert_allclose(np.asarray(_loss(full, gt, K, T)), want_full, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(_loss([full, half], gt, K, T)),
                             (want_full + want_half) / 2, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(_loss([full, half], gt, K, T, num_scales=1)),
                             want_full, rtol=1e-4)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match=r'T_ts: expected shape \[2,4,4\]'):
    reprojected_distance_loss(_EST, _GT, _K, _T[:, :3])
  with pytest.raises(ValueError, match=r'K: expected shape \[2,3,3\]'):
    reprojected_distance_loss(_EST, _GT, _K[:1], _T)
  with pytest.raises(ValueError, match='num_scales'):
    reprojected_distance_loss([_EST], _GT, _K, _T, num_scales=2)


