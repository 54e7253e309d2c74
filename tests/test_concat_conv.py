"""concat_conv.per_part_input_grad: a convolution over concatenated parts, input gradient per part.

The forward is the plain convolution (bit for bit); the gradients equal the
plain ones up to float rounding; the backward computes each part's input
gradient on its own (no convolution produces the gradient of all channels at
once), and XLA folds the concatenation of those gradients against the slices of
the concatenation's own gradient, so no buffer of the full channel count exists
in the backward pass (at PackNet01's full-resolution iconv it would be held
through the train step's memory peak).
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from packnet_jax.models import packnet_blocks as blocks
from packnet_jax.models.fast import concat_conv

NHWC = ('NHWC', 'HWIO', 'NHWC')
PARTS = (3, 5, 1)
SHAPE = (2, 9, 11)
FEATURES = 7


def _conv(conv_general_dilated):
  return lambda x, w: conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=NHWC)


PLAIN = _conv(jax.lax.conv_general_dilated)
PER_PART = _conv(concat_conv.per_part_input_grad(PARTS))


def _inputs():
  keys = jax.random.split(jax.random.PRNGKey(0), len(PARTS) + 1)
  parts = [jax.random.normal(k, SHAPE + (c,)) for k, c in zip(keys, PARTS)]
  return parts, jax.random.normal(keys[-1], (3, 3, sum(PARTS), FEATURES))


def _loss(conv):
  def loss(parts, w):
    return jnp.sum(jnp.tanh(conv(jnp.concatenate(parts, axis=-1), w)) * jnp.arange(float(FEATURES)))
  return loss


def test_values_and_gradients_are_the_plain_convolutions():
  parts, w = _inputs()
  x = jnp.concatenate(parts, axis=-1)
  np.testing.assert_array_equal(jax.jit(PER_PART)(x, w), jax.jit(PLAIN)(x, w))
  g_part, g_plain = (jax.jit(jax.grad(_loss(c), argnums=(0, 1)))(parts, w) for c in (PER_PART, PLAIN))
  for a, b in zip(jax.tree_util.tree_leaves(g_part), jax.tree_util.tree_leaves(g_plain)):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


def _input_gradient_channels(conv):
  """Channel counts of the backward's convolutions that produce an input-shaped [B,H,W,c] gradient."""
  parts, w = _inputs()
  jaxpr = jax.make_jaxpr(jax.grad(_loss(conv), argnums=(0, 1)))(parts, w)
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      for sub in jax.core.jaxprs_in_params(eqn.params):
        walk(sub)
      if eqn.primitive.name == 'conv_general_dilated':
        shape = eqn.outvars[0].aval.shape
        if shape[:3] == SHAPE and shape[3] != FEATURES:  # not the forward's
          found.append(shape[3])
  walk(jaxpr.jaxpr)
  return sorted(found)


def test_backward_computes_each_parts_input_gradient_alone():
  assert _input_gradient_channels(PER_PART) == sorted(PARTS)
  assert _input_gradient_channels(PLAIN) == [sum(PARTS)]  # the check can fail: autodiff makes one


def _full_channel_instructions(conv):
  """Top-level instructions of the compiled value-and-gradient that hold all channels at once."""
  parts, w = _inputs()
  text = jax.jit(jax.value_and_grad(_loss(conv), argnums=(0, 1))).lower(parts, w).compile().as_text()
  entry = text[text.index('\nENTRY'):]
  shape = 'f32[%s]' % ','.join(str(n) for n in SHAPE + (sum(PARTS),))
  return [line for line in entry.split('\n') if re.search(r'= ' + re.escape(shape), line)]


def test_xla_never_holds_the_full_channel_gradient():
  """Only the forward's concatenation has all channels; the plain backward adds a gradient of them."""
  per_part, plain = _full_channel_instructions(PER_PART), _full_channel_instructions(PLAIN)
  assert len(per_part) == 1, per_part
  assert len(plain) >= 2, plain


def test_conv2d_block_takes_a_list_of_parts_and_keeps_its_parameters():
  """Conv2D([a, b, c]) is Conv2D(concatenate([a, b, c])): same parameters, same output, per-part gradients."""
  parts, _ = _inputs()
  x = jnp.concatenate(parts, axis=-1)
  block = blocks.Conv2D(16, 3)
  variables = block.init(jax.random.PRNGKey(1), x)
  assert jax.tree_util.tree_structure(block.init(jax.random.PRNGKey(1), parts)) == jax.tree_util.tree_structure(variables)
  np.testing.assert_array_equal(block.apply(variables, parts), block.apply(variables, x))
  grads_parts = jax.grad(lambda p: jnp.sum(jnp.sin(block.apply(variables, p))))(parts)
  grads_whole = jax.grad(lambda x: jnp.sum(jnp.sin(block.apply(variables, x))))(x)
  np.testing.assert_allclose(jnp.concatenate(grads_parts, axis=-1), grads_whole, rtol=0, atol=1e-5)


def test_per_part_conv_rejects_parts_that_do_not_add_up():
  _, w = _inputs()
  with pytest.raises(ValueError, match=r'parts of \(3, 5, 1\) channels'):
    PER_PART(jnp.zeros(SHAPE + (8,)), w)
