"""Trace-time argument checks (shapes, choices) for the pure-array layers: geometry, losses, metrics.

Shapes are static under `jax.jit`, so these checks run once while tracing and
raise a `ValueError` naming the argument before any numerics happen.
"""


def _fmt(pattern):
  return '[' + ','.join(str(p) for p in pattern) + ']'


def check_shape(name, x, pattern):
  """Raises ValueError unless `x.shape` matches `pattern`.

  Args:
    name: argument name used in the error message.
    x: array (anything with `.shape`).
    pattern: tuple of ints (fixed sizes) and strings (free sizes, e.g. 'B');
      a string used twice must bind to the same size.

  Returns:
    dict mapping each string in `pattern` to its bound size.
  """
  shape = tuple(getattr(x, 'shape', ()))
  bound = {}
  ok = len(shape) == len(pattern)
  if ok:
    for size, want in zip(shape, pattern):
      if isinstance(want, int):
        ok &= size == want
      elif bound.setdefault(want, size) != size:
        ok = False
  if not ok:
    raise ValueError(f'{name}: expected shape {_fmt(pattern)}, got {shape}')
  return bound


def check_choice(name, value, choices):
  """Raises ValueError unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(f'{name}: expected one of {tuple(choices)}, got {value!r}')
