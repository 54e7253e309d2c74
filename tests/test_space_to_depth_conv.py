"""models/fast/space_to_depth_conv.py: the block form equals the stride-2 convolution it replaces."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from packnet_jax.models.fast import space_to_depth_conv

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _direct(x, kernel, pad):
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), [(pad, pad)] * 2, dimension_numbers=NHWC,
                                      precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize('size,pad,shape', [(7, 3, (2, 12, 20, 9)), (5, 2, (1, 10, 14, 4)), (3, 1, (1, 8, 6, 3)),
                                            (1, 0, (1, 6, 8, 5)), (4, 1, (1, 8, 8, 2)), (3, 0, (1, 10, 8, 3)),
                                            (7, 5, (1, 6, 8, 2))])
def test_values_and_gradients_equal_the_stride2_convolution(size, pad, shape):
  with jax.enable_x64():
    rng = np.random.default_rng(size * 10 + pad)
    x = jnp.asarray(rng.standard_normal(shape))
    kernel = jnp.asarray(rng.standard_normal((size, size, shape[-1], 3)))
    want = _direct(x, kernel, pad)
    got = space_to_depth_conv.stride2_conv(x, kernel, (2, 2), [(pad, pad)] * 2,
                                           precision=jax.lax.Precision.HIGHEST)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    cotangent = jnp.asarray(rng.standard_normal(want.shape))

    def grads(fn):
      return jax.grad(lambda x, k: jnp.sum(cotangent * fn(x, k)), argnums=(0, 1))(x, kernel)
    want_grads = grads(lambda x, k: _direct(x, k, pad))
    got_grads = grads(lambda x, k: space_to_depth_conv.stride2_conv(x, k, (2, 2), [(pad, pad)] * 2,
                                                                     precision=jax.lax.Precision.HIGHEST))
    for g, w in zip(got_grads, want_grads):
      np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_space_to_depth_channel_order():
  x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
  blocks = space_to_depth_conv.space_to_depth2(x)
  assert blocks.shape == (2, 2, 3, 12)
  # block (i, j), channel (dy, dx, c) holds pixel (2i + dy, 2j + dx), channel c
  for dy in range(2):
    for dx in range(2):
      np.testing.assert_array_equal(blocks[:, :, :, (2 * dy + dx) * 3:(2 * dy + dx + 1) * 3], x[:, dy::2, dx::2])


@pytest.mark.parametrize('kwargs', [dict(window_strides=(1, 1)), dict(shape=(1, 7, 8, 3)),
                                    dict(padding=[(1, 2), (1, 2)]), dict(feature_group_count=3)])
def test_refuses_what_it_does_not_compute(kwargs):
  shape = kwargs.pop('shape', (1, 8, 8, 3))
  args = dict(window_strides=(2, 2), padding=[(1, 1), (1, 1)])
  args.update(kwargs)
  with pytest.raises(ValueError, match='stride2_conv: only'):
    space_to_depth_conv.stride2_conv(jnp.zeros(shape), jnp.zeros((3, 3, 3, 6)), **args)
