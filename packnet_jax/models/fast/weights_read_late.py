"""A convolution whose backward pass reads its kernel only once the output's cotangent exists.

Why: the input gradient of a convolution needs its kernel flipped and transposed, a copy that depends
on the parameters alone, and XLA scheduled such copies early, where they stayed alive through the
whole forward pass and its memory peak (half a gigabyte in PackNet01's train step;
docs/performance.md).
"""
import functools

import jax

from packnet_jax.utils.ordering import after


def weights_read_late(fn):
  """`fn(x, w, *args, **kwargs)` (a convolution) with the same values and gradients, whose backward
  pass differentiates `fn` at (x, `ordering.after(w, cotangent)`): the kernel's transposed copy then
  follows the cotangent. The weight gradient and everything else are unchanged.
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
