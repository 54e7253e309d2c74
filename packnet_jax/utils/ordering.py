"""Data dependencies that order computations for XLA on every backend, without changing a value.

XLA:CPU removes `lax.optimization_barrier` before it fuses, schedules and
assigns buffers, so a barrier cannot say "compute this after that" there. A
real data dependency can: `after(tree, anchor)` returns `tree` bit for bit, but
computed from a scalar that depends on `anchor`. The scalar is -0.0 whatever
the anchor holds, and x + -0.0 == x for every float (signed zeros, infinities
and NaN included; denormals are flushed by XLA's arithmetic either way), but no
compiler can prove it constant, so the dependency survives. Used to update
donated optimiser state in place (train/guarded_update.py), to keep
rematerialisation late (models/fast/remat.py) and to keep a convolution's kernel
transposes out of the forward pass (models/fast/weights_read_late.py).
"""
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

