"""3×3 convolution of a reflection-padded input, without building the padded input.

The DepthResNet decoder pads every conv input by reflection (1 pixel), then
convolves without padding. Written that way, XLA:CPU copies the input into a
padded buffer and runs a VALID convolution, which measured 1.3-4x slower than the
library's zero-padded convolution of the same input at the decoder's shapes.
Reflection and zero padding only differ for the outermost ring of outputs, so:

- the interior comes from the zero-padded ('SAME') convolution;
- the top/bottom rows and left/right columns of the output are recomputed on
  thin strips (the 3 input lines they see, reflection-padded along the strip),
  in two convolution calls;
- the pieces are concatenated, which XLA fuses into the consumer (bias, ELU).

Every output is the same 9-tap sum as the reference's; only the order of the
sum may differ. A 1-channel output (the disparity heads) is instead one matrix
product to 9 per-tap channels followed by a sum of 9 shifted maps: a
convolution with one output channel uses the library badly.

(Measured with YNNPACK's convolutions, the CPU defaults until 2026-12. With
XLA's own, the defaults now (utils/xla_flags.py), the strips are at par with the
padded VALID convolution at the decoder's shapes, 0.93-1.07 of its time, and the
1-channel heads still take a third of its time: 1.4 vs 4.5 ms at 192×640×16.)

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


def _border_stitched(x, kernel, precision):
  """Zero-padded conv inside, exact reflection-padded strips on the 1-pixel border."""
  height, width = x.shape[1:3]
  inner = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=NHWC, precision=precision)
  # Each strip holds the 3 input lines a border line sees, in reflected order. Top and
  # bottom strips are laid side by side (left and right ones one above the other) so
  # that each pair is one convolution call: every call packs the whole kernel, which
  # costs as much as a strip's arithmetic. The 2 outputs across the seam are dropped.
  top = _reflect(jnp.concatenate([x[:, 1:2], x[:, 0:2]], 1), rows=False, cols=True)
  bottom = _reflect(jnp.concatenate([x[:, -2:], x[:, -2:-1]], 1), rows=False, cols=True)
  rows = _valid(jnp.concatenate([top, bottom], 2), kernel, precision)  # [B, 1, 2W+2, O]
  left = jnp.concatenate([x[:, :, 1:2], x[:, :, 0:2]], 2)
  right = jnp.concatenate([x[:, :, -2:], x[:, :, -2:-1]], 2)
  cols = _valid(jnp.concatenate([left, right], 1), kernel, precision)  # [B, 2H-2, 1, O]
  middle = jnp.concatenate([cols[:, :height - 2], inner[:, 1:-1, 1:-1], cols[:, height:]], 2)
  return jnp.concatenate([rows[:, :, :width], middle, rows[:, :, width + 2:]], 1)


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
      return _border_stitched(lhs, rhs, precision)
  return _valid(_reflect(lhs, rows=True, cols=True), rhs, precision)


# Below this many input elements (512 KiB of float32) the padded copy costs less than the
# rewrites' fixed costs (more calls, more operations to compile): measured at the test shapes.
MIN_REWRITE_ELEMENTS = 2 ** 17


def worth_rewriting(height, width, channels):
  """Whether the input is large enough for either rewrite to pay (and has a border to stitch)."""
  return height >= 3 and width >= 3 and height * width * channels >= MIN_REWRITE_ELEMENTS


def use_border_strips(height, width, out_channels):
  """Whether the strips pay: the padded copy they avoid (H·W·C) outweighs the kernel (9·C·O).

  Each strip call reads (and the CPU library packs) the whole kernel; on maps smaller
  than that the padded copy is cheaper. At 192×640 this keeps DepthResNet's 6×20 and
  12×40 decoder levels on the plain path (measured equal).
  """
  return height * width >= 9 * out_channels
