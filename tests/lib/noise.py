"""Parity checks as data: the tests assert them, tools/measure_noise.py measures their float32 noise.

A parity check is a function `check(dtype, *params)` that computes our result for a reference
fixture's input in `dtype` and returns a list of `Comparison`s (our array, the stored reference array,
the tolerance). A test calls it with float32 and asserts every comparison (`assert_all`). The tool
also calls it with float64 (x64 enabled, the models in compute_dtype float64: parameters, statistics and outputs) and
prints, per comparison, the observed error (our float32 vs the reference), the float32 noise (our
float32 vs our float64 result) and the tolerance. Tolerances are set from that noise with a margin
(4-10x, stated next to each tolerance), never from the observed error alone.

    python tools/measure_noise.py                 # every check, this process's XLA flags
    python tools/measure_noise.py --both_xla      # also with XNN individual-convolution fusion
"""
import dataclasses
from typing import Any

import jax
import numpy as np

CHECKS = {}  # 'module.function' → (function, list of parameter tuples)


@dataclasses.dataclass
class Comparison:
  """One array of ours against one stored reference array, with its tolerance (as assert_allclose)."""
  name: str
  ours: Any
  ref: Any
  atol: float = 0.0
  rtol: float = 0.0

  def ratio(self, ref=None):
    """max |ours − ref| / (atol + rtol·|ref|): the comparison passes iff this is ≤ 1."""
    ref = self.ref if ref is None else ref
    ours, ref = np.asarray(self.ours, np.float64), np.asarray(ref, np.float64)
    err = np.abs(ours - ref)
    bound = self.atol + self.rtol * np.abs(ref)
    if err.size == 0 or not np.any(err):
      return 0.0
    with np.errstate(divide='ignore', invalid='ignore'):
      return float(np.nanmax(np.where(err == 0, 0.0, err / bound)))


def parity_check(params=((),)):
  """Registers `check(dtype, *p)` for every parameter tuple `p` in `params` (for the tool)."""
  params = [p if isinstance(p, tuple) else (p,) for p in params]

  def register(fn):
    CHECKS[f'{fn.__module__}.{fn.__name__}'] = (fn, params)
    return fn

  return register


def assert_all(comparisons):
  """Asserts every comparison with numpy's assert_allclose semantics."""
  assert comparisons, 'a parity check returned no comparison'
  for c in comparisons:
    np.testing.assert_allclose(np.asarray(c.ours), c.ref, rtol=c.rtol, atol=c.atol, err_msg=c.name)


def cast_floats(tree, dtype):
  """Every floating leaf of `tree` as a numpy array of `dtype` (other leaves unchanged)."""
  def cast(x):
    x = np.asarray(x)
    return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x
  return jax.tree_util.tree_map(cast, tree)
