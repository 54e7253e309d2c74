"""Data dependencies that order computations for XLA on every backend, without changing a value.

XLA:CPU removes `lax.optimization_barrier` before it fuses, schedules and
assigns buffers, so a barrier cannot say "compute this after that" there. A
real data dependency can: `after(tree, anchor)` returns `tree` bit for bit, but
computed from a scalar that depends on `anchor`. The scalar is -0.0 whatever
the anchor holds, and x + -0.0 == x for every float (signed zeros, infinities
and NaN included; denormals are flushed by XLA's arithmetic either way), but no
compiler can prove it constant, so the dependency survives. Used to update
donated optimiser state in place (train/guarded_update.py) and to keep
rematerialisation late (models/layers.remat), and `weights_read_late` keeps a
convolution's kernel transposes out of the forward pass.
"""
import functools

import jax
import jax.numpy as jnp


def negative_zero_from(tree):
  """-0.0 (float32) as a function of the first element of every leaf of `tree`."""
  firsts = [x[(0,) * x.ndim].astype(jnp.float32) for x in jax.tree_util.tree_leaves(tree)]
  # where(...) is 0 or 1 whatever the input (NaN compares false); times -0.0 it is -0.0.
  return jnp.where(jnp.abs(jnp.stack(firsts)).sum() < 1.0, 0.0, 1.0) * -0.0


def add_zero(x, zero):
  """x + zero in x's dtype (floating leaves only; others are returned as they are)."""
  return x + zero.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x


def after(tree, anchor):
  """`tree` unchanged, but computed after (and from) every leaf of `anchor` (see the module docstring)."""
  if not jax.tree_util.tree_leaves(anchor):
    return tree
  zero = negative_zero_from(anchor)
  return jax.tree_util.tree_map(lambda x: add_zero(x, zero), tree)


def weights_read_late(fn):
  """`fn(x, w, *args, **kwargs)` (a convolution), same values and gradients, with a backward pass that
  reads `w` only once the output's cotangent exists.

  The input gradient of a convolution needs its kernel flipped and transposed,
  which depends on the parameters alone. XLA schedules such a copy anywhere it
  likes, and it placed the copies early: PackNet01's train step (batch 4,
  192×640) kept 0.5 GB of them (302 MB for pack5's [3,3,16384,512] kernel)
  alive through the whole forward pass and its memory peak. Here the backward
  pass differentiates `fn` at (x, after(w, cotangent)): the copy now follows
  the cotangent. The weight gradient and everything else are unchanged.
  """
  @functools.wraps(fn)
  def wrapped(x, w, *args, **kwargs):
    def apply(x, w):
      return fn(x, w, *args, **kwargs)

    @jax.custom_vjp
    def late(x, w):
      return apply(x, w)

    def forward(x, w):
      return apply(x, w), (x, w)

    def backward(saved, y_ct):
      x, w = saved
      return jax.vjp(apply, x, after(w, y_ct))[1](y_ct)

    late.defvjp(forward, backward)
    return late(x, w)
  return wrapped
