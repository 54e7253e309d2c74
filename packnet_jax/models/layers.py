"""Layers and helpers shared by every network: convolution, GroupNorm, ELU, input checks, output dtype.

All tensors are NHWC. Submodule names mirror the attribute names of the PyTorch
reference (`conv_base`, `normalize`, Sequential indices as '0', '1', ...) so that
`packnet_jax.convert.keymap` derives every torch state-dict key mechanically from
the Flax variable path.

Every convolution output is tagged with `jax.ad_checkpoint.checkpoint_name`
(`fast.remat.CONV_OUTPUT`) so that `remat(..., 'save_conv')` can keep exactly those arrays.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from packnet_jax.models import initializers
from packnet_jax.models.fast.remat import CONV_OUTPUT
from packnet_jax.models.fast.weights_read_late import weights_read_late
from packnet_jax.utils.dtypes import param_dtype

Dtype = Any


class Conv(nn.Conv):
  """nn.Conv whose output is named CONV_OUTPUT for the remat policy (same parameters)."""

  def __call__(self, inputs):
    return checkpoint_name(super().__call__(inputs), CONV_OUTPUT)


def conv(features, kernel_size, stride=1, padding=0, use_bias=True, *, name, dtype=jnp.float32,
         conv_general_dilated=None, kernel_init=initializers.xavier_uniform, bias_init=initializers.zeros):
  """A 2-D convolution with explicit symmetric padding.

  torch pads both sides equally; Flax 'SAME' would put the odd pad at the end
  for strided convs, so padding is always given explicitly. `conv_general_dilated`
  replaces `lax.conv_general_dilated` (same signature, same parameters). Its
  backward pass transposes the kernel only once it is needed
  (`fast.weights_read_late`). The default initialisers are those of the
  reference's own networks (PackNet01/PackNetSlim01 and PoseNet `init_weights`:
  xavier_uniform_, zero bias); the ResNet parts pass torchvision's or torch's default.
  """
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size, kernel_size)
  return Conv(features, kernel_size, strides=stride, padding=[(padding, padding)] * len(kernel_size),
              use_bias=use_bias, dtype=dtype, param_dtype=param_dtype(dtype), name=name,
              kernel_init=kernel_init, bias_init=bias_init,
              conv_general_dilated=weights_read_late(conv_general_dilated or jax.lax.conv_general_dilated))


def elu(x):
  """torch's ELU (alpha 1): x if x > 0 else exp(x) − 1.

  In float32 this uses exp(x) − 1 rather than expm1(x): XLA:CPU's expm1 runs at
  half the speed of exp (docs/performance.md), and the two differ by at most
  1.2e-7 (float32 rounding of exp(x) near 1; torch's own expm1 is within 1 ulp of
  either). Same gradient, exp(x). Other dtypes keep expm1, whose relative
  accuracy near 0 a 16-bit exp(x) − 1 would lose.
  """
  if x.dtype != jnp.float32:
    return nn.elu(x)
  return jnp.where(x > 0, x, jnp.exp(jnp.minimum(x, 0)) - 1)


def spatial_sum(x, rows=16):
  """[B, *spatial, C] → [B, C]: the sum over the spatial axes, in two stages.

  The pixels are split into r ≤ `rows` equal runs (r the largest divisor of the
  pixel count), summed element-wise (a sum over a major axis of r: XLA:CPU fuses
  the producer, e.g. GroupNorm's squared deviations, into that loop instead of
  materialising it for a tree reduction, which it does above 32), then the
  P/r partial pixels: GroupNorm's statistics several times faster on CPU
  (docs/performance.md).
  """
  b, c = x.shape[0], x.shape[-1]
  pixels = functools.reduce(lambda n, size: n * size, x.shape[1:-1], 1)
  r = max(d for d in range(1, rows + 1) if pixels % d == 0)
  return x.reshape(b, r, (pixels // r) * c).sum(1).reshape(b, pixels // r, c).sum(1)


class GroupNorm(nn.Module):
  """torch GroupNorm(num_groups, C) on NHWC: biased two-pass variance, statistics in `param_dtype`.

  Same parameters as nn.GroupNorm ('scale', 'bias'). The statistics are per-channel
  sums over H, W (`spatial_sum`) folded into groups afterwards, and the
  normalisation is one per-channel multiply-add: on XLA:CPU faster than reducing
  over a [.., G, C/G] view. `activation` (e.g. `elu`) is applied
  to the result.

  Normalisation and activation are recomputed in the backward pass from the
  input (jax.checkpoint): autodiff would otherwise keep the normalised map as
  well as the input and the output, one more activation-sized array per block.
  """
  num_groups: int = 16
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  activation: Callable[[Any], Any] | None = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    if c % self.num_groups:
      raise ValueError(f'GroupNorm: x: channels must be a multiple of {self.num_groups}, got shape {tuple(x.shape)}')
    scale = self.param('scale', nn.initializers.ones, (c,), param_dtype(self.dtype))
    bias = self.param('bias', nn.initializers.zeros, (c,), param_dtype(self.dtype))
    return jax.checkpoint(self._normalize)(x, scale, bias)

  def _normalize(self, x, scale, bias):
    b, c = x.shape[0], x.shape[-1]
    g = self.num_groups
    x32 = jnp.asarray(x, param_dtype(self.dtype))
    spatial = tuple(range(1, x.ndim - 1))
    count = (c // g) * functools.reduce(lambda n, axis: n * x.shape[axis], spatial, 1)

    def per_channel(group_sums):  # [B, G] → [B, C]
      return jnp.repeat(group_sums, c // g, axis=1)

    def group_sum(channel_sums):  # [B, C] → [B, G]
      return channel_sums.reshape(b, g, c // g).sum(-1)

    mean = per_channel(group_sum(spatial_sum(x32)) / count)
    centred = x32 - mean.reshape((b,) + (1,) * len(spatial) + (c,))
    var = per_channel(group_sum(spatial_sum(jnp.square(centred))) / count)
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    add = bias - mean * mul
    shape = (b,) + (1,) * len(spatial) + (c,)
    y = (x32 * mul.reshape(shape) + add.reshape(shape)).astype(self.dtype)
    return y if self.activation is None else self.activation(y)


def group_norm(*, name=None, dtype=jnp.float32, activation=None):
  """torch GroupNorm(16, C): biased variance, eps 1e-5, two-pass variance; then `activation`."""
  return GroupNorm(num_groups=16, epsilon=1e-5, dtype=dtype, activation=activation, name=name)


class Stage(nn.Module):
  """A torch Sequential of `num_blocks` blocks named '0', '1', ...; only the first is strided.

  `block` is a partial Module constructor taking `stride` and `name`; each block
  is called as block(x, train).
  """
  block: Callable[..., nn.Module]
  num_blocks: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train=False):
    for i in range(self.num_blocks):
      x = self.block(stride=self.stride if i == 0 else 1, name=str(i))(x, train)
    return x


def upsample_nearest2(x):
  """Nearest ×2 upsampling of [B,H,W,C]: pixel (y, x) ← (⌊y/2⌋, ⌊x/2⌋)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def check_depth_input(rgb, net_name):
  """Depth nets need [B,H,W,3] with H, W multiples of 32 (docs/reference.md §2.8)."""
  if rgb.ndim != 4 or rgb.shape[-1] != 3:
    raise ValueError(f'{net_name}: rgb: expected shape [B,H,W,3], got {tuple(rgb.shape)}')
  if rgb.shape[1] % 32 or rgb.shape[2] % 32:
    raise ValueError(f'{net_name}: rgb: H and W must be multiples of 32, got shape {tuple(rgb.shape)}')


def check_pose_inputs(target, contexts, net_name, nb_ref_imgs=None):
  """Pose nets need target [B,H,W,3] and contexts [B,N,H,W,3] (N = nb_ref_imgs if given)."""
  if target.ndim != 4 or target.shape[-1] != 3:
    raise ValueError(f'{net_name}: target: expected shape [B,H,W,3], got {tuple(target.shape)}')
  b, h, w, _ = target.shape
  if (contexts.ndim != 5 or contexts.shape[0] != b or contexts.shape[1] < 1
      or tuple(contexts.shape[2:]) != (h, w, 3)):
    raise ValueError(f'{net_name}: contexts: expected shape [{b},N,{h},{w},3], got {tuple(contexts.shape)}')
  if nb_ref_imgs is not None and contexts.shape[1] != nb_ref_imgs:
    raise ValueError(f'{net_name}: contexts: expected {nb_ref_imgs} context images (nb_ref_imgs), '
                     f'got shape {tuple(contexts.shape)}')


def to_output_dtype(x):
  """A network output in `param_dtype(x.dtype)`: float32 from 16-bit activations, float64 stays."""
  return jnp.asarray(x, param_dtype(x.dtype))


def select_scales(inv_depths, train, all_scales=None):
  """The reference returns all 4 scales in train mode and the full-res map in eval.

  `all_scales` overrides that choice independently of `train` (e.g. the 4-scale
  pyramid with BatchNorm running averages).
  """
  return inv_depths if (train if all_scales is None else all_scales) else inv_depths[0]
