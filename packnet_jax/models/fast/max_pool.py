"""The ResNet stem's 3×3 / stride-2 / pad-1 max-pool, with a hand-written gradient.

torch's `max_pool2d` sends each output's gradient to the FIRST maximum of its
window in row-major order (ties included: after the stem's ReLU many windows
hold several zeros), and a NaN wins over any number. Here the forward pass
scans the nine strided taps in that order and keeps, next to the maximum, the
index of the tap that won; the backward pass routes the gradient by that index
(nine interior-padded adds that XLA fuses into one pass over the input).

Why: autodiff of `reduce_window` gives a select-and-scatter, a large share of
the DepthResNet18 train step on CPU (docs/performance.md).

The winner is recorded, not recovered by comparing the input with the output
in the backward pass: XLA may recompute the input (ReLU(BatchNorm(conv))) inside
each consumer, and an ulp of difference between two recomputations would lose
the gradient of that window.
"""
import jax
import jax.numpy as jnp
from jax import lax

_WINDOW, _STRIDE, _PAD = 3, 2, 1


def _pad_spatial(x, value, interior=0, low=(_PAD, _PAD), high=(_PAD, _PAD)):
  return lax.pad(x, jnp.asarray(value, x.dtype),
                 ((0, 0, 0), (low[0], high[0], interior), (low[1], high[1], interior), (0, 0, 0)))


def _out_size(n):
  return (n + 2 * _PAD - _WINDOW) // _STRIDE + 1


def _taps(x):
  """The nine [B, Ho, Wo, C] strided views of the −inf-padded input, in torch's scan order."""
  ho, wo = _out_size(x.shape[1]), _out_size(x.shape[2])
  padded = _pad_spatial(x, -jnp.inf)
  for dy in range(_WINDOW):
    for dx in range(_WINDOW):
      yield padded[:, dy:dy + _STRIDE * (ho - 1) + 1:_STRIDE, dx:dx + _STRIDE * (wo - 1) + 1:_STRIDE]


def _max_and_winner(x):
  best, winner = None, None
  for k, tap in enumerate(_taps(x)):
    if best is None:
      best, winner = tap, jnp.zeros(tap.shape, jnp.int8)
      continue
    wins = (tap > best) | jnp.isnan(tap)   # strictly greater: the first maximum stays
    best = jnp.where(wins, tap, best)
    winner = jnp.where(wins, jnp.int8(k), winner)
  return best, winner


@jax.custom_vjp
def max_pool_3x3_s2(x):
  """[B, H, W, C] → [B, ⌈H/2⌉, ⌈W/2⌉, C]: max over 3×3 windows, stride 2, padding 1 (−inf)."""
  return _max_and_winner(x)[0]


def _fwd(x):
  y, winner = _max_and_winner(x)
  return y, (winner, x)   # x: only its shape is read (it is kept alive by the rest of the net anyway)


def _bwd(residuals, g):
  winner, x = residuals
  h, w = x.shape[1:3]
  ho, wo = g.shape[1:3]
  grad = None
  for k in range(_WINDOW * _WINDOW):
    dy, dx = divmod(k, _WINDOW)
    # Output (i, j) read padded input (2i + dy, 2j + dx): place the gradient it routed there.
    part = _pad_spatial(jnp.where(winner == k, g, jnp.zeros_like(g)), 0, interior=_STRIDE - 1, low=(dy, dx),
                        high=(h + 2 * _PAD - dy - _STRIDE * (ho - 1) - 1, w + 2 * _PAD - dx - _STRIDE * (wo - 1) - 1))
    grad = part if grad is None else grad + part
  return (grad[:, _PAD:_PAD + h, _PAD:_PAD + w],)


max_pool_3x3_s2.defvjp(_fwd, _bwd)
