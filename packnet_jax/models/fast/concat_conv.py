"""A convolution over concatenated parts whose input gradient comes out part by part.

Why: the plain gradient is one buffer of all the channels that lives as long as any part's slice,
through the train step's memory peak (docs/performance.md).

The decoder's iconv layers convolve [unpacked, skip, upsampled inverse depth]
joined along channels. Autodiff computes the input gradient of that convolution
as one buffer of all the channels and slices it afterwards; XLA keeps the whole
buffer as long as any slice is still needed, and the skip's slice is needed
until the backward pass reaches the encoder. At PackNet01's full resolution
(batch 4, 192×640) that is a [4,192,640,129] buffer (242 MiB) held through the
encoder's backward pass, where the train step's memory peaks, to keep 64 of its
channels.

`per_part_input_grad(channels)` computes the input gradient of each part with
its own slice of the kernel. The backward returns their concatenation, which
XLA folds away against the slices of the concatenation's own gradient, so each
part's gradient is a buffer of its own and dies as soon as its consumer has run.
Forward values, and gradients up to summation order within each part, are those
of the plain convolution.
"""
import itertools

import jax


def per_part_input_grad(channels, conv_general_dilated=jax.lax.conv_general_dilated):
  """`conv_general_dilated` (NHWC input, HWIO kernel) whose input gradient is computed per part.

  `channels`: the channel counts of the concatenated parts, in order.
  """
  channels = tuple(int(c) for c in channels)
  bounds = tuple(zip((0,) + tuple(itertools.accumulate(channels))[:-1], itertools.accumulate(channels)))

  def conv(lhs, rhs, *args, **kwargs):
    if lhs.shape[-1] != sum(channels) or rhs.shape[-2] != sum(channels):
      raise ValueError(f'per_part_input_grad: parts of {channels} channels, but input {tuple(lhs.shape)} '
                       f'and kernel {tuple(rhs.shape)}')

    def apply(x, w):
      return conv_general_dilated(x, w, *args, **kwargs)

    @jax.custom_vjp
    def split_conv(x, w):
      return apply(x, w)

    def forward(x, w):
      return apply(x, w), (x, w)

    def backward(saved, y_ct):
      x, w = saved
      w_ct = jax.linear_transpose(lambda k: apply(x, k), w)(y_ct)[0]
      x_cts = []
      for start, stop in bounds:
        part = jax.ShapeDtypeStruct(x.shape[:-1] + (stop - start,), x.dtype)
        x_cts.append(jax.linear_transpose(lambda p, k=w[..., start:stop, :]: apply(p, k), part)(y_ct)[0])
      return jax.numpy.concatenate(x_cts, axis=-1), w_ct

    split_conv.defvjp(forward, backward)
    return split_conv(lhs, rhs)
  return conv
