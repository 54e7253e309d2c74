"""The stem max-pool's hand-written gradient: torch's first-maximum routing, ties included."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from packnet_jax.models.fast.max_pool import max_pool_3x3_s2


def _first_max_gradient(x, g):
  """torch max_pool2d(3, 2, 1) backward, as a loop: each output's gradient to its window's first maximum."""
  b, h, w, c = x.shape
  ho, wo = g.shape[1:3]
  grad = np.zeros_like(x)
  for n in range(b):
    for ch in range(c):
      for i in range(ho):
        for j in range(wo):
          best = None
          for u in range(2 * i - 1, 2 * i + 2):       # rows, then columns; strictly greater replaces
            for v in range(2 * j - 1, 2 * j + 2):
              if 0 <= u < h and 0 <= v < w and (best is None or x[n, u, v, ch] > x[n, best[0], best[1], ch]):
                best = (u, v)
          grad[n, best[0], best[1], ch] += g[n, i, j, ch]
  return grad


@pytest.mark.parametrize('hw', [(8, 10), (7, 9), (2, 3)])
def test_values_equal_flax_max_pool_and_gradients_route_to_the_first_maximum(hw):
  rng = np.random.RandomState(sum(hw))
  # Post-ReLU-like values on a coarse grid: most windows hold ties (several zeros or equal values).
  x = np.maximum(rng.randint(-3, 3, size=(2, *hw, 3)), 0).astype(np.float64)
  with jax.enable_x64(True):
    y, vjp = jax.vjp(max_pool_3x3_s2, jnp.asarray(x))
    want = nn.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(y, want)
    g = rng.randint(1, 100, size=y.shape).astype(np.float64)   # integers: every sum is exact
    (grad,) = vjp(jnp.asarray(g))
  assert np.mean(x == 0) > 0.4   # the ties this test is about
  np.testing.assert_array_equal(grad, _first_max_gradient(x, g))


def test_a_nan_in_a_window_gives_nan_like_reduce_window():
  x = np.zeros((1, 6, 8, 2), np.float32)
  x[0, 3, 5, 1] = np.nan
  y = np.asarray(max_pool_3x3_s2(jnp.asarray(x)))
  want = np.asarray(nn.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))
  assert np.isnan(y).sum() == np.isnan(want).sum() == 4
  np.testing.assert_array_equal(y, want)


def test_gradient_equals_autodiff_of_reduce_window_without_ties():
  x = np.random.RandomState(0).normal(size=(2, 12, 16, 4))
  with jax.enable_x64(True):
    f = lambda x: jnp.sum(jnp.sin(max_pool_3x3_s2(x)))
    ref = lambda x: jnp.sum(jnp.sin(nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))))
    np.testing.assert_allclose(jax.grad(f)(x), jax.grad(ref)(x), rtol=0, atol=1e-15)
  x32 = x.astype(np.float32)   # float32 under jit, as in the train step
  np.testing.assert_array_equal(jax.jit(jax.grad(lambda x: jnp.sum(max_pool_3x3_s2(x) ** 2)))(x32),
                                jax.jit(jax.grad(lambda x: jnp.sum(nn.max_pool(
                                    x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))) ** 2)))(x32))
