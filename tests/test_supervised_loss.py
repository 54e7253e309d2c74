"""Supervised loss: parity with supervised_loss.npz (every stored method/GT/scale combination)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lib.fixtures import load_json, load_npz, nchw_to_nhwc
from lib import noise

from packnet_jax.losses.supervised import match_gt_scales, supervised_loss

_FIX = load_npz('supervised_loss.npz')
_META = load_json('losses_meta.json')['supervised_loss.npz']
_PREDS = [nchw_to_nhwc(_FIX[f'pred_inv_depth_s{i}']) for i in range(4)]
_STORED = sorted(k for k in _FIX if k.startswith('loss/'))
RTOL = 1e-5


@functools.lru_cache(maxsize=None)
def _jitted(method, num_scales):
  return jax.jit(functools.partial(supervised_loss, method=method, num_scales=num_scales))


def test_fixture_has_every_expected_combination():
  # 5 methods × (sparse-, plain) × 2 GTs × 2 scale counts = 40, minus 4 plain-berhu (raise in torch)
  # and 2 plain silog on sparse GT (NaN by construction) → 34 stored values.
  assert len(_STORED) == 34
  assert all('error' in _META[f'loss/berhu/gt_{g}/n{n}']
             for g in ('sparse', 'dense') for n in (1, 4))


@noise.parity_check(params=_STORED)
def check_loss(dtype, key):
  _, method, gt_name, n = key.split('/')
  preds = noise.cast_floats(_PREDS, dtype)
  gt = noise.cast_floats(nchw_to_nhwc(_FIX[f'gt_inv_{gt_name[3:]}']), dtype)
  loss = _jitted(method, int(n[1:]))(preds, gt)
  return [noise.Comparison('loss', loss, _FIX[key][0], rtol=RTOL)]


@pytest.mark.parametrize('key', _STORED)
def test_matches_reference(key):
  noise.assert_all(check_loss(np.float32, key))


@pytest.mark.parametrize('gt_name', ['sparse', 'dense'])
def test_nearest_downsampled_gt_is_exact(gt_name):
  gt = nchw_to_nhwc(_FIX[f'gt_inv_{gt_name}'])
  matched = jax.jit(match_gt_scales)(gt, _PREDS)
  for i, m in enumerate(matched):
    want = nchw_to_nhwc(_FIX[f'gt_inv_{gt_name}_matched_s{i}'])
    np.testing.assert_array_equal(np.asarray(m), want)


def test_plain_berhu_raises():
  with pytest.raises(ValueError, match='sparse-berhu'):
    supervised_loss(_PREDS, nchw_to_nhwc(_FIX['gt_inv_dense']), method='berhu')


def test_plain_silog_on_sparse_gt_is_nan_like_reference():
  loss = _jitted('silog', 1)(_PREDS, nchw_to_nhwc(_FIX['gt_inv_sparse']))
  assert np.isnan(np.asarray(loss))


def test_sparse_equals_dense_on_dense_gt():
  gt = nchw_to_nhwc(_FIX['gt_inv_dense'])
  for method in ('l1', 'mse', 'silog', 'abs_rel'):
    np.testing.assert_allclose(np.asarray(_jitted('sparse-' + method, 4)(_PREDS, gt)),
                               np.asarray(_jitted(method, 4)(_PREDS, gt)), rtol=1e-6)


def test_sparse_gradient_is_finite_and_zero_off_the_valid_pixels():
  gt = nchw_to_nhwc(_FIX['gt_inv_sparse'])
  for method in ('sparse-l1', 'sparse-berhu', 'sparse-silog', 'sparse-abs_rel'):
    grad = jax.jit(jax.grad(lambda p, m=method: supervised_loss([p], gt, method=m, num_scales=1)))(
        jnp.asarray(_PREDS[0]))
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad)), method
    assert np.all(grad[gt <= 0] == 0), method
    assert np.any(grad[gt > 0] != 0), method


def test_perfect_prediction_gives_zero():
  gt = nchw_to_nhwc(_FIX['gt_inv_dense'])
  for method in ('sparse-l1', 'mse', 'sparse-berhu', 'abs_rel'):
    assert float(_jitted(method, 1)([gt], gt)) == 0.0, method


def test_bad_arguments_raise():
  gt = nchw_to_nhwc(_FIX['gt_inv_dense'])
  with pytest.raises(ValueError, match='supervised_method'):
    supervised_loss(_PREDS, gt, method='sparse-rmse')
  with pytest.raises(ValueError, match=r'gt_inv_depth: expected shape \[B,H,W,1\]'):
    supervised_loss(_PREDS, gt[..., 0])
  with pytest.raises(ValueError, match='num_scales'):
    supervised_loss(_PREDS[:2], gt, num_scales=4)
