"""A stride-2 convolution computed as a stride-1 convolution over 2×2 pixel blocks.

Each output of a stride-2 K×K convolution reads input rows and columns 2i + k − p.
Folding every 2×2 block of pixels into the channels (space-to-depth, channel
order (dy, dx, c)) turns it into a stride-1 convolution of ⌈(K + p mod 2)/2⌉
block taps over 4·C channels; the kernel gets zero taps where a block holds a
pixel outside the original window. Same sum of products, another order.

Why: PoseNet's first layer (7×7/2, 9 → 16 channels) runs faster in the block
form on XLA:CPU, forward and weight gradient (docs/performance.md); other stride-2
layers measured slower this way, so only the PoseNet stem uses it. A plain
convolution on every backend.

`stride2_conv` has `lax.conv_general_dilated`'s signature, so it plugs into
`nn.Conv(conv_general_dilated=...)` and the parameter tree stays the Conv's.
"""
from jax import lax
import jax.numpy as jnp

NHWC = ('NHWC', 'HWIO', 'NHWC')


def space_to_depth2(x):
  """[B,H,W,C] → [B,H/2,W/2,4C], channel order (dy, dx, c)."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def block_kernel(kernel, pad):
  """[K,K,C,O] stride-2 kernel with padding `pad` → ([n,n,4C,O] block kernel, leading block pad).

  Tap k reads padded row 2i + k, i.e. input row 2(i − left) + (k + lead) with
  lead = pad mod 2 and left = (pad + lead)/2: shifted by `lead` zero taps (and
  rounded up to an even count) the taps split into n block taps of 2 phases.
  """
  size, _, channels, features = kernel.shape
  lead = pad % 2
  padded = size + lead + (size + lead) % 2
  n = padded // 2
  kernel = jnp.pad(kernel, ((lead, padded - size - lead),) * 2 + ((0, 0), (0, 0)))
  kernel = kernel.reshape(n, 2, n, 2, channels, features).transpose(0, 2, 1, 3, 4, 5)
  return kernel.reshape(n, n, 4 * channels, features), (pad + lead) // 2


def stride2_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                 precision=None, preferred_element_type=None):
  """conv(lhs, rhs) for a square, stride-2, symmetrically padded NHWC convolution of even H, W."""
  del dimension_numbers  # NHWC/HWIO by construction (nn.Conv on NHWC input)
  ones = (1,) * (lhs.ndim - 2)
  pad = padding[0][0] if not isinstance(padding, str) else None
  if (lhs.ndim != 4 or tuple(window_strides) != (2, 2) or rhs.shape[0] != rhs.shape[1]
      or pad is None or any(tuple(p) != (pad, pad) for p in padding)
      or tuple(lhs_dilation or ones) != ones or tuple(rhs_dilation or ones) != ones
      or feature_group_count != 1 or batch_group_count != 1 or lhs.shape[1] % 2 or lhs.shape[2] % 2):
    raise ValueError('stride2_conv: only a square, stride-2, symmetrically padded, ungrouped NHWC '
                     f'convolution of even height and width; got input {tuple(lhs.shape)}, '
                     f'kernel {tuple(rhs.shape)}, strides {tuple(window_strides)}, padding {padding}')
  size = rhs.shape[0]
  kernel, left = block_kernel(rhs, pad)
  n = kernel.shape[0]
  block_padding = []
  for extent in lhs.shape[1:3]:
    out = (extent + 2 * pad - size) // 2 + 1
    block_padding.append((left, out - 1 + n - extent // 2 - left))  # exactly `out` block outputs
  return lax.conv_general_dilated(space_to_depth2(lhs), kernel, (1, 1), block_padding, dimension_numbers=NHWC,
                                  precision=precision, preferred_element_type=preferred_element_type)
