"""fast.weights_read_late: a convolution whose backward pass reads the kernel only after the cotangent.

Values and gradients must be bit for bit those of the plain convolution; and in
the backward program nothing may be computed from the kernel alone (the flipped,
transposed kernel of the input gradient was such a computation: XLA placed it
early and kept 302 MB of it alive through PackNet01's forward pass).
"""
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest

from packnet_jax.models import layers
from packnet_jax.models.fast import reflect_conv
from packnet_jax.models.fast import space_to_depth_conv
from packnet_jax.models.fast.weights_read_late import weights_read_late

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _plain(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=NHWC)


def _strided(x, w):
  return space_to_depth_conv.stride2_conv(x, w, (2, 2), [(1, 1), (1, 1)], dimension_numbers=NHWC)


def _reflect(x, w):
  return reflect_conv.reflect_pad_conv(x, w, (1, 1), [(0, 0), (0, 0)], dimension_numbers=NHWC)


def _inputs(seed=0):
  kx, kw, kc = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(kx, (2, 8, 12, 5))
  w = jax.random.normal(kw, (3, 3, 5, 7)) * 0.3
  return x, w, kc


@pytest.mark.parametrize('conv', [_plain, _strided, _reflect], ids=['plain', 'stride2', 'reflect'])
def test_values_and_gradients_are_bit_for_bit_the_plain_ones(conv):
  x, w, kc = _inputs()
  late = weights_read_late(conv)
  y = conv(x, w)
  ct = jax.random.normal(kc, y.shape)
  np.testing.assert_array_equal(late(x, w), y)
  for dtype in (jnp.float32, jnp.bfloat16):
    xs, ws, cts = x.astype(dtype), w.astype(dtype), ct.astype(dtype)
    expected = jax.jit(lambda a, b: jax.vjp(conv, a, b)[1](cts))(xs, ws)
    got = jax.jit(lambda a, b: jax.vjp(late, a, b)[1](cts))(xs, ws)
    for e, g in zip(expected, got):
      assert g.dtype == e.dtype
      np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(e, np.float32))


def _kernel_only_equations(conv, x=None, w=None):
  """Primitives of conv's backward pass that compute from the kernel without the cotangent."""
  if x is None:
    x, w, _ = _inputs()
  y, vjp_fn = jax.vjp(conv, x, w)
  closed = jax.make_jaxpr(vjp_fn)(jnp.zeros_like(y))
  jaxpr = closed.jaxpr
  from_kernel = {v for v, c in zip(jaxpr.constvars, closed.consts)
                 if np.shape(c) == w.shape and np.array_equal(c, w)}
  assert from_kernel, 'the kernel is a residual of the backward pass'
  from_cotangent = set(jaxpr.invars)
  found = []
  for eqn in jaxpr.eqns:
    ins = [v for v in eqn.invars if not isinstance(v, jax_core.Literal)]
    kernel = any(v in from_kernel for v in ins)
    cotangent = any(v in from_cotangent for v in ins)
    if kernel:
      from_kernel.update(eqn.outvars)
    if cotangent:
      from_cotangent.update(eqn.outvars)
    if kernel and not cotangent:
      found.append(eqn.primitive.name)
  return found


def test_plain_backward_flips_the_kernel_before_the_cotangent_exists():
  # What the wrapper is for (and proof that the check below can fail): the input gradient's
  # kernel flip depends on the kernel alone, a copy XLA may place anywhere.
  assert 'rev' in _kernel_only_equations(_plain)


@pytest.mark.parametrize('conv', [_plain, _strided, _reflect], ids=['plain', 'stride2', 'reflect'])
def test_backward_computes_nothing_from_the_kernel_alone(conv):
  assert _kernel_only_equations(weights_read_late(conv)) == []


def test_every_network_convolution_goes_through_it():
  """layers.conv (every nn.Conv of the networks) wraps its convolution in weights_read_late."""
  x, w, kc = _inputs()
  module = layers.conv(7, 3, 1, 1, name='c')

  def apply(x, kernel):
    return module.apply({'params': {'kernel': kernel, 'bias': jnp.zeros(7)}}, x)
  assert _kernel_only_equations(apply, x, w) == []
  ct = jax.random.normal(kc, (2, 8, 12, 7))
  got = jax.vjp(apply, x, w)[1](ct)
  expected = jax.vjp(_plain, x, w)[1](ct)
  for g, e in zip(got, expected):
    np.testing.assert_array_equal(g, e)
