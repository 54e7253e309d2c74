"""reflect_pad_conv (the DepthResNet decoder's 3×3 conv) = reflection pad + VALID conv, exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from packnet_jax.models import depth_resnet
from packnet_jax.models.fast import reflect_conv


def padded_conv(x, kernel):
  """The reference's formulation: ReflectionPad2d(1), then an unpadded 3×3 convolution."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=reflect_conv.NHWC)


def ours(x, kernel):
  return reflect_conv.reflect_pad_conv(x, kernel, (1, 1), ((0, 0), (0, 0)))


# (batch, H, W, C, O): which formulation runs is decided by the shape.
CASES = {
    'border stitched': (2, 6, 7, 6, 4),
    'border stitched, 3x9 map': (1, 3, 9, 4, 3),
    'tap sum (1 output channel)': (2, 6, 5, 16, 1),
    'plain (small map)': (1, 2, 5, 4, 3),
    'plain (map smaller than the kernel)': (1, 4, 5, 6, 8),
}


@pytest.mark.parametrize('shape', CASES.values(), ids=CASES.keys())
def test_values_and_gradients_match_reflection_padding_in_float64(shape, monkeypatch):
  monkeypatch.setattr(reflect_conv, 'MIN_REWRITE_ELEMENTS', 0)  # rewrite these small maps too
  b, h, w, c, o = shape
  rng = np.random.default_rng(sum(shape))
  with jax.enable_x64():
    x = jnp.asarray(rng.normal(size=(b, h, w, c)))
    kernel = jnp.asarray(rng.normal(size=(3, 3, c, o)))
    probe = jnp.asarray(rng.normal(size=(b, h, w, o)))  # a random linear read-out for the gradients
    want, got = padded_conv(x, kernel), ours(x, kernel)
    assert got.dtype == jnp.float64 and got.shape == (b, h, w, o)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # The border is where the two paddings differ: it must not be the zero-padded result.
    zero = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=reflect_conv.NHWC)
    assert float(jnp.max(jnp.abs(want[:, 0] - zero[:, 0]))) > 1e-3
    grads_want = jax.grad(lambda x, k: jnp.sum(padded_conv(x, k) * probe), (0, 1))(x, kernel)
    grads_got = jax.grad(lambda x, k: jnp.sum(ours(x, k) * probe), (0, 1))(x, kernel)
    for g, w_ in zip(grads_got, grads_want):
      np.testing.assert_allclose(g, w_, rtol=0, atol=1e-11)


def test_rejects_what_it_does_not_implement():
  x, kernel = jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 2))
  with pytest.raises(ValueError, match='3x3, stride-1'):
    reflect_conv.reflect_pad_conv(x, kernel, (2, 2), ((0, 0), (0, 0)))
  with pytest.raises(ValueError, match='3x3, stride-1'):
    reflect_conv.reflect_pad_conv(x, jnp.ones((5, 5, 2, 2)), (1, 1), ((0, 0), (0, 0)))


def test_conv3x3_module_keeps_the_reference_parameter_tree():
  module = depth_resnet.Conv3x3(4)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 9, 5)), jnp.float32)
  variables = module.init(jax.random.PRNGKey(0), x)
  shapes = jax.tree_util.tree_map(jnp.shape, variables['params'])
  assert shapes == {'conv': {'kernel': (3, 3, 5, 4), 'bias': (4,)}}
  p = variables['params']['conv']
  np.testing.assert_allclose(module.apply(variables, x), padded_conv(x, p['kernel']) + p['bias'], atol=1e-5)


def test_rewrites_only_where_they_pay():
  # DepthResNet18's decoder convs at 192×640, input (H, W, C) → O: all but the 6×20 level are large
  # enough to rewrite; the border strips skip the 6×20 and 12×40 levels (kernel larger than the map).
  real = [((6, 20, 512), 256), ((12, 40, 512), 256), ((24, 80, 256), 128), ((48, 160, 128), 64),
          ((96, 320, 96), 32), ((192, 640, 16), 16)]
  assert [reflect_conv.worth_rewriting(*hwc) for hwc, _ in real] == [False, True, True, True, True, True]
  assert [reflect_conv.use_border_strips(h, w, o) for (h, w, _), o in real] == [False, False, True, True, True, True]
  # The test-suite shapes (32×96 input) stay on the plain path: nothing to gain, more to compile.
  assert not any(reflect_conv.worth_rewriting(*hwc) for hwc in ((16, 48, 96), (32, 96, 16), (8, 24, 192)))
  assert not reflect_conv.worth_rewriting(2, 4096, 64)  # no interior to stitch a border onto
