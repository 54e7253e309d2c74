"""PackNet's building blocks (docs/reference.md §2.1), NHWC, with the reference's submodule names.

Conv2D, ResidualConv / ResidualBlock, InvDepth, the Conv3d, and the packing and unpacking layers
(space-to-depth → Conv3d → Conv2d, and back). The names (`conv_base`, `normalize`, `conv3d`, `conv`,
'0', '1', ...) are the torch attributes, so `packnet_jax.convert.keymap` derives every state-dict key
from the Flax variable path.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from packnet_jax.models import initializers
from packnet_jax.models.fast import concat_conv
from packnet_jax.models.fast import pack_conv
from packnet_jax.models.fast.remat import CONV_OUTPUT, remat
from packnet_jax.models.layers import Stage, conv, elu, group_norm
from packnet_jax.models.packing import pixel_shuffle_depth_major
from packnet_jax.utils.dtypes import param_dtype

Dtype = Any


class Conv2D(nn.Module):
  """Zero-pad k//2 → Conv(k, stride) → GroupNorm(16) → ELU.

  `x` is an array, or a list of arrays that are first concatenated along
  channels (the decoder's [unpacked, skip, upsampled inverse depth], torch.cat);
  a list's input gradient is computed part by part (fast/concat_conv.py).
  """
  features: int
  kernel_size: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv_fn = None
    if isinstance(x, (list, tuple)):
      conv_fn = concat_conv.per_part_input_grad([part.shape[-1] for part in x])
      x = jnp.concatenate(x, axis=-1)
    x = conv(self.features, self.kernel_size, self.stride, self.kernel_size // 2, name='conv_base',
             dtype=self.dtype, conv_general_dilated=conv_fn)(x)
    return group_norm(name='normalize', dtype=self.dtype, activation=elu)(x)
class ResidualConv(nn.Module):
  """ELU(GroupNorm(conv2(conv1(x)) + conv3(x))) with a 1×1 strided shortcut conv3."""
  features: int
  stride: int = 1
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    out = Conv2D(self.features, 3, self.stride, dtype=self.dtype, name='conv1')(x)
    out = Conv2D(self.features, 3, 1, dtype=self.dtype, name='conv2')(out)
    shortcut = conv(self.features, 1, self.stride, name='conv3', dtype=self.dtype)(x)
    if self.dropout:
      # torch Dropout2d zeroes whole channels: broadcast the mask over H and W.
      shortcut = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(shortcut)
    return group_norm(name='normalize', dtype=self.dtype, activation=elu)(out + shortcut)


def ResidualBlock(features, num_blocks, stride=1, dropout=0.0, dtype=jnp.float32, name=None,  # noqa: N802
                  remat_mode='none'):
  """ResidualConv(stride) followed by num_blocks−1 ResidualConv(1) (a function, as in the reference).

  `remat_mode` (see `remat`) applies to each ResidualConv.
  """
  block = functools.partial(remat(ResidualConv, remat_mode, static_argnums=(2,)), features,
                            dropout=dropout, dtype=dtype)
  return Stage(block, num_blocks, stride, name=name)


class InvDepth(nn.Module):
  """Zero-pad 1 → Conv3×3 → sigmoid / min_depth: inverse depth in (0, 1/min_depth)."""
  out_channels: int = 1
  min_depth: float = 0.5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = conv(self.out_channels, 3, 1, 1, name='conv1', dtype=self.dtype)(x)
    return nn.sigmoid(x) / self.min_depth


class Conv3dUnit(nn.Module):
  """torch Conv3d(1 → d, 3×3×3, pad 1) over (depth, H, W): depth-major [B,D,H,W] → [B,D,H,W,d].

  Parameters are those of a Flax 3-D nn.Conv ('kernel' [3,3,3,1,d] as
  (depth, H, W, in, out), 'bias' [d]), so checkpoints convert unchanged.
  Computed as one 2-D convolution on every backend (`fast.pack_conv.conv3d_depth_major`):
  forward and backward are ordinary 2-D convolutions whose memory is a few
  copies of the input. `weights()` returns the parameters in the compute dtype
  for a caller that fuses them with the next convolution.
  """
  features: int
  dtype: Dtype = jnp.float32

  def setup(self):
    # The reference's PackNet init_weights: xavier_uniform_ (fans over the 3×3×3 taps), zero bias.
    self.kernel = self.param('kernel', initializers.xavier_uniform, (3, 3, 3, 1, self.features),
                             param_dtype(self.dtype))
    self.bias = self.param('bias', nn.initializers.zeros, (self.features,), param_dtype(self.dtype))

  def weights(self):
    return self.kernel.astype(self.dtype), self.bias.astype(self.dtype)

  def __call__(self, x):
    y = pack_conv.conv3d_depth_major(jnp.asarray(x, self.dtype), *self.weights(), spatial_padding=1)
    return checkpoint_name(y, CONV_OUTPUT)




class ConvWeights(nn.Module):
  """The parameters of a `conv` (same names, shapes and initialisers), for a convolution computed elsewhere."""
  features: int
  kernel_size: int
  in_features: int
  dtype: Dtype = jnp.float32

  def setup(self):
    shape = (self.kernel_size, self.kernel_size, self.in_features, self.features)
    self.kernel = self.param('kernel', initializers.xavier_uniform, shape, param_dtype(self.dtype))
    self.bias = self.param('bias', nn.initializers.zeros, (self.features,), param_dtype(self.dtype))

  def weights(self):
    return self.kernel.astype(self.dtype), self.bias.astype(self.dtype)


class Conv2DWeights(nn.Module):
  """A Conv2D's parameters ('conv_base', 'normalize') for a layer that computes its convolution itself."""
  features: int
  kernel_size: int
  in_features: int
  dtype: Dtype = jnp.float32

  def setup(self):
    self.conv_base = ConvWeights(self.features, self.kernel_size, self.in_features, dtype=self.dtype)
    self.normalize = group_norm(dtype=self.dtype, activation=elu)

  def weights(self):
    return self.conv_base.weights()


class PackLayerConv3d(nn.Module):
  """packing → Conv3d(1→d) → Conv2D(d·4C → C, k): [B,H,W,C] → [B,H/2,W/2,C].

  The three run as one function of the input and both layers' parameters
  (`fast.pack_conv.pack_conv3d_conv2d`: one fused convolution where that is
  cheaper); the parameters are the reference's ('conv3d', 'conv/conv_base',
  'conv/normalize').
  """
  kernel_size: int
  d: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    conv3d = Conv3dUnit(self.d, dtype=self.dtype, name='conv3d')       # Conv3d(1 → d) over the 4C packed channels
    conv2d = Conv2DWeights(channels, self.kernel_size, self.d * 4 * channels, dtype=self.dtype, name='conv')
    # packing → Conv3d → Conv2d(d·4C → C)
    y = pack_conv.pack_conv3d_conv2d(jnp.asarray(x, self.dtype), conv3d.weights(), conv2d.weights())
    return conv2d.normalize(checkpoint_name(y, CONV_OUTPUT))           # → GroupNorm → ELU


class UnpackLayerConv3d(nn.Module):
  """Conv2D(→ 4·Cout/d, k) → Conv3d(1→d) → PixelShuffle(2): [B,H,W,Cin] → [B,2H,2W,Cout]."""
  features: int
  kernel_size: int = 3
  d: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = Conv2D(self.features * 4 // self.d, self.kernel_size, 1, dtype=self.dtype, name='conv')(x)
    x = Conv3dUnit(self.d, dtype=self.dtype, name='conv3d')(jnp.moveaxis(x, -1, 1))
    return pixel_shuffle_depth_major(x, 2)
