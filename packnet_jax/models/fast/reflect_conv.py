"""3×3 convolution of a reflection-padded input, without building the padded input.

The DepthResNet decoder pads every conv input by reflection (1 pixel), then
convolves without padding. Written that way, XLA:CPU copies the input into a
padded buffer and runs a VALID convolution, which measured 1.3-4x slower than the
library's zero-padded convolution of the same input at the decoder's shapes
(docs/performance.md). Reflection and zero padding only differ for the outermost ring of outputs, so:

- the zero-padded ('SAME') convolution gives every output;
- on the top/bottom rows and left/right columns, the taps that read zeros
  outside the image are added again with the mirrored line's values: four thin
  1×3 / 3×1 convolutions, added in place (no copy of the output).

Every output is the same 9-tap sum as the reference's; only the order of the
sum may differ. A 1-channel output (the disparity heads) is instead one matrix
product to 9 per-tap channels followed by a sum of 9 shifted maps: a
convolution with one output channel uses the library badly.

`reflect_pad_conv` has `lax.conv_general_dilated`'s signature so it plugs into
`nn.Conv(conv_general_dilated=...)` and the parameter tree stays the Conv's.
"""
import jax.numpy as jnp
from jax import lax

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _reflect(x, rows, cols):
  return jnp.pad(x, ((0, 0), (1, 1) if rows else (0, 0), (1, 1) if cols else (0, 0), (0, 0)), mode='reflect')


def _valid(x, kernel, precision):
  return lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=NHWC, precision=precision)


def _border_corrected(x, kernel, precision):
  """Zero-padded conv, plus on the 1-pixel border the taps that read the reflection instead of zeros.

  A border output of the zero-padded conv misses the taps that fall outside the
  image; reflection padding gives them the mirrored line (row 1 for row −1, ...).
  Their sum is a 1×3 (rows) or 3×1 (columns) convolution of that mirrored line
  with the matching kernel row or column, added in place to the border lines.
  The corners' outside taps belong to the row corrections (the mirrored rows are
  reflection-padded along the row, the mirrored columns zero-padded).
  """
  height, width = x.shape[1:3]
  out = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=NHWC, precision=precision)
  conv = lambda line, taps, pad: lax.conv_general_dilated(line, taps, (1, 1), pad, dimension_numbers=NHWC,
                                                          precision=precision)
  top = conv(_reflect(x[:, 1:2], rows=False, cols=True), kernel[0:1], 'VALID')
  bottom = conv(_reflect(x[:, height - 2:height - 1], rows=False, cols=True), kernel[2:3], 'VALID')
  left = conv(x[:, :, 1:2], kernel[:, 0:1], [(1, 1), (0, 0)])
  right = conv(x[:, :, width - 2:width - 1], kernel[:, 2:3], [(1, 1), (0, 0)])
  out = out.at[:, :1].add(top).at[:, height - 1:].add(bottom)
  return out.at[:, :, :1].add(left).at[:, :, width - 1:].add(right)


def _tap_sum(x, kernel, precision):
  """Per-tap products (a 1×1 matmul to 9·O channels), reflection-padded, summed at their offsets."""
  height, width = x.shape[1:3]
  taps = jnp.einsum('bhwc,ijco->bhwijo', x, kernel, precision=precision)
  taps = _reflect(taps.reshape(taps.shape[:3] + (-1,)), rows=True, cols=True).reshape(
      taps.shape[0], height + 2, width + 2, 3, 3, -1)
  return sum(taps[:, i:i + height, j:j + width, i, j] for i in range(3) for j in range(3))


def reflect_pad_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                     dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                     precision=None, preferred_element_type=None):
  """conv(reflection_pad(lhs, 1), rhs) for a stride-1, unpadded, 3×3 NHWC convolution."""
  del dimension_numbers, preferred_element_type  # NHWC/HWIO by construction (nn.Conv on NHWC input)
  ones = (1,) * (lhs.ndim - 2)
  if (tuple(rhs.shape[:2]) != (3, 3) or lhs.ndim != 4 or tuple(window_strides) != ones
      or any(tuple(p) != (0, 0) for p in padding) or tuple(lhs_dilation or ones) != ones
      or tuple(rhs_dilation or ones) != ones or feature_group_count != 1 or batch_group_count != 1):
    raise ValueError('reflect_pad_conv: only a 3x3, stride-1, unpadded, ungrouped NHWC convolution')
  height, width, channels = lhs.shape[1:]
  if worth_rewriting(height, width, channels):
    if 9 * rhs.shape[-1] <= channels:  # the per-tap products are no larger than the input
      return _tap_sum(lhs, rhs, precision)
    if use_border_strips(height, width, rhs.shape[-1]):
      return _border_corrected(lhs, rhs, precision)
  return _valid(_reflect(lhs, rows=True, cols=True), rhs, precision)


# Below this many input elements (512 KiB of float32) the padded copy costs less than the
# rewrites' fixed costs (more calls, more operations to compile): measured at the test shapes.
MIN_REWRITE_ELEMENTS = 2 ** 17


def worth_rewriting(height, width, channels):
  """Whether the input is large enough for either rewrite to pay (and has a border to stitch)."""
  return height >= 3 and width >= 3 and height * width * channels >= MIN_REWRITE_ELEMENTS


def use_border_strips(height, width, out_channels):
  """Whether the border corrections pay: the padded copy they avoid (H·W·C) outweighs the kernel (9·C·O).

  The four correction calls read (and the CPU library packs) the kernel's outer rows
  and columns; on maps smaller than the kernel the padded copy is cheaper. At 192×640
  this keeps DepthResNet's 6×20 and 12×40 decoder levels on the plain path (measured equal).
  """
  return height * width >= 9 * out_channels
