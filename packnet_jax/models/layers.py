"""PackNet building blocks (SPEC §2.1) and helpers shared by every network.

All tensors are NHWC. Submodule names mirror the attribute names of the PyTorch
reference (`conv_base`, `normalize`, `conv3d`, Sequential indices as '0', '1',
...) so that `packnet_jax.convert.keymap` derives every torch state-dict key
mechanically from the Flax variable path.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


# ----------------------------------------------------------------------------
# Shared helpers.


def conv(features, kernel_size, stride=1, padding=0, use_bias=True, *, name, dtype=jnp.float32):
  """A 2-D (or 3-D, for a tuple kernel) convolution with explicit symmetric padding.

  torch pads both sides equally; Flax 'SAME' would put the odd pad at the end
  for strided convs, so padding is always given explicitly.
  """
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size, kernel_size)
  return nn.Conv(features, kernel_size, strides=stride, padding=[(padding, padding)] * len(kernel_size),
                 use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)


def group_norm(*, name, dtype=jnp.float32):
  """torch GroupNorm(16, C): biased variance, eps 1e-5, two-pass variance."""
  return nn.GroupNorm(num_groups=16, epsilon=1e-5, use_fast_variance=False, dtype=dtype,
                      param_dtype=jnp.float32, name=name)


def upsample_nearest2(x):
  """Nearest ×2 upsampling of [B,H,W,C]: pixel (y, x) ← (⌊y/2⌋, ⌊x/2⌋)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def check_depth_input(rgb, net_name):
  """Depth nets need [B,H,W,3] with H, W multiples of 32 (SPEC §2.8)."""
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


def to_float32(x):
  return jnp.asarray(x, jnp.float32)


def select_scales(inv_depths, train, all_scales=None):
  """The reference returns all 4 scales in train mode and the full-res map in eval.

  `all_scales` overrides that choice independently of `train` (e.g. the 4-scale
  pyramid with BatchNorm running averages).
  """
  return inv_depths if (train if all_scales is None else all_scales) else inv_depths[0]


# ----------------------------------------------------------------------------
# Space-to-depth / depth-to-space with the reference's channel order.


def packing(x, r=2):
  """[B,H,W,C] → [B,H/r,W/r,r²C] with channel c·r² + i·r + j ← pixel (r·y+i, r·x+j) of channel c."""
  b, h, w, c = x.shape
  if h % r or w % r:
    raise ValueError(f'packing: x: H and W must be multiples of {r}, got shape {tuple(x.shape)}')
  x = x.reshape(b, h // r, r, w // r, r, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)  # [B, h, w, C, i, j]: channel-major, as torch.
  return x.reshape(b, h // r, w // r, c * r * r)


def pixel_shuffle(x, r=2):
  """torch PixelShuffle(r) in NHWC: inverse of `packing`."""
  b, h, w, c = x.shape
  if c % (r * r):
    raise ValueError(f'pixel_shuffle: x: channels must be a multiple of {r * r}, got shape {tuple(x.shape)}')
  x = x.reshape(b, h, w, c // (r * r), r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # [B, h, i, w, j, C]
  return x.reshape(b, h * r, w * r, c // (r * r))


# ----------------------------------------------------------------------------
# PackNet blocks.


class Conv2D(nn.Module):
  """Zero-pad k//2 → Conv(k, stride) → GroupNorm(16) → ELU."""
  features: int
  kernel_size: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = conv(self.features, self.kernel_size, self.stride, self.kernel_size // 2, name='conv_base',
             dtype=self.dtype)(x)
    return nn.elu(group_norm(name='normalize', dtype=self.dtype)(x))


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
    return nn.elu(group_norm(name='normalize', dtype=self.dtype)(out + shortcut))


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


def ResidualBlock(features, num_blocks, stride=1, dropout=0.0, dtype=jnp.float32, name=None):  # noqa: N802
  """ResidualConv(stride) followed by num_blocks−1 ResidualConv(1) (a function, as in the reference)."""
  block = functools.partial(ResidualConv, features, dropout=dropout, dtype=dtype)
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
  """torch Conv3d(1 → d, 3×3×3, pad 1) over (channels, H, W) of [B,H,W,C] → [B,H,W,d·C].

  The channel axis plays the role of depth; the flattened output channel is
  k·C + c (3-D feature outermost), as torch's view of [B,d,C,H,W]. Parameters
  are those of a Flax 3-D nn.Conv ('kernel' [3,3,3,1,d], 'bias' [d]).
  `impl`: 'conv' = lax 3-D convolution; 'shifts' = the same sum written as 27
  shifted multiply-adds (about 8× faster on XLA:CPU, whose 3-D conv is slow);
  'auto' = 'shifts' on CPU, 'conv' elsewhere.
  """
  features: int
  impl: str = 'auto'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    d = self.features
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, 3, 1, d), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (d,), jnp.float32)
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    x = jnp.asarray(x, self.dtype)
    impl = self.impl
    if impl == 'auto':
      impl = 'shifts' if jax.default_backend() == 'cpu' else 'conv'
    if impl == 'conv':
      y = jax.lax.conv_general_dilated(x.transpose(0, 3, 1, 2)[..., None], kernel, (1, 1, 1), [(1, 1)] * 3,
                                       dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
      y = (y + bias).transpose(0, 2, 3, 4, 1)  # [B, H, W, d, C]
    elif impl == 'shifts':
      xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1)))
      y = jnp.broadcast_to(bias[:, None], (b, h, w, d, c))
      for dz in range(3):
        for dy in range(3):
          for dx in range(3):
            tap = xp[:, dy:dy + h, dx:dx + w, dz:dz + c]
            y = y + tap[:, :, :, None, :] * kernel[dz, dy, dx, 0][:, None]
    else:
      raise ValueError(f"Conv3dUnit: impl: expected 'auto', 'conv' or 'shifts', got {self.impl!r}")
    return y.reshape(b, h, w, d * c)


class PackLayerConv3d(nn.Module):
  """packing → Conv3d(1→d) → Conv2D(d·4C → C, k): [B,H,W,C] → [B,H/2,W/2,C]."""
  kernel_size: int
  d: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    x = packing(x, 2)
    x = Conv3dUnit(self.d, dtype=self.dtype, name='conv3d')(x)
    return Conv2D(channels, self.kernel_size, 1, dtype=self.dtype, name='conv')(x)


class UnpackLayerConv3d(nn.Module):
  """Conv2D(→ 4·Cout/d, k) → Conv3d(1→d) → PixelShuffle(2): [B,H,W,Cin] → [B,2H,2W,Cout]."""
  features: int
  kernel_size: int = 3
  d: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = Conv2D(self.features * 4 // self.d, self.kernel_size, 1, dtype=self.dtype, name='conv')(x)
    x = Conv3dUnit(self.d, dtype=self.dtype, name='conv3d')(x)
    return pixel_shuffle(x, 2)
