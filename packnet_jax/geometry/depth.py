"""Depth <-> inverse-depth conversions (reference `utils/depth.py`).

Both accept an array or a list/tuple of arrays (multi-scale outputs).
"""
import jax.numpy as jnp

_MIN = 1e-6


def _map(fn, x):
  return type(x)(fn(v) for v in x) if isinstance(x, (list, tuple)) else fn(x)


def inv2depth(inv_depth):
  """depth = 1 / max(inv_depth, 1e-6)."""
  return _map(lambda v: 1. / jnp.maximum(v, _MIN), inv_depth)


def depth2inv(depth):
  """inv_depth = 1 / max(depth, 1e-6), and 0 where depth <= 0 (invalid)."""
  return _map(lambda v: jnp.where(v > 0., 1. / jnp.maximum(v, _MIN), 0.).astype(v.dtype), depth)
