"""DepthResNet: ResNet encoder + monodepth2-style decoder (docs/reference.md §2.4), NHWC.

Flax names mirror the reference keys `encoder.encoder.*` and
`decoder.decoder.<N>.*` (N = 0..9 upconvs (4,0), (4,1), ..., (0,1); 10..13 =
dispconv 0..3).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from packnet_jax.models import initializers, layers
from packnet_jax.models.fast import reflect_conv
from packnet_jax.models.fast.remat import remat
from packnet_jax.models.resnet_encoder import ResnetEncoder, parse_resnet_version

DECODER_WIDTHS = (16, 32, 64, 128, 256)
MIN_DEPTH = 0.1
MAX_DEPTH = 100.0


class Conv3x3(nn.Module):
  """ReflectionPad(1) → Conv3×3 with bias (child 'conv'), initialised as torch's default Conv2d."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # Same result as jnp.pad(x, mode='reflect') before the conv, computed faster (see reflect_conv).
    return layers.conv(self.features, 3, 1, 0, name='conv', dtype=self.dtype,
                       conv_general_dilated=reflect_conv.reflect_pad_conv,
                       **initializers.torch_default_conv(x.shape[-1], 3))(x)


class ConvBlock(nn.Module):
  """Conv3x3 (child 'conv') → ELU."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return layers.elu(Conv3x3(self.features, dtype=self.dtype, name='conv')(x))


class DepthDecoderConvs(nn.Module):
  """The reference decoder's ModuleList: returns the 4 sigmoid maps [disp0 (full res), ..., disp3].

  `remat` (see `fast.remat.remat`) wraps every ConvBlock.
  """
  dtype: Any = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, features):
    dt = self.dtype
    conv_block = remat(ConvBlock, self.remat)
    x = features[-1]
    disps = {}
    for i in (4, 3, 2, 1, 0):
      x = conv_block(DECODER_WIDTHS[i], dtype=dt, name=str(2 * (4 - i)))(x)
      x = layers.upsample_nearest2(x)
      if i > 0:
        x = jnp.concatenate([x, features[i - 1]], axis=-1)
      x = conv_block(DECODER_WIDTHS[i], dtype=dt, name=str(2 * (4 - i) + 1))(x)
      if i <= 3:
        disps[i] = nn.sigmoid(Conv3x3(1, dtype=dt, name=str(10 + i))(x))
    return [disps[i] for i in range(4)]


class DepthDecoder(nn.Module):
  """Holds the conv list as child 'decoder' (reference key `decoder.decoder.N`)."""
  dtype: Any = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, features):
    return DepthDecoderConvs(dtype=self.dtype, remat=self.remat, name='decoder')(features)


def scale_inv_depth(disp):
  """Sigmoid output → inverse depth in (1/MAX_DEPTH, 1/MIN_DEPTH) = (0.01, 10)."""
  min_inv, max_inv = 1.0 / MAX_DEPTH, 1.0 / MIN_DEPTH
  return min_inv + (max_inv - min_inv) * layers.to_output_dtype(disp)


class DepthResNet(nn.Module):
  """ResNet-based depth net.

  Attributes:
    version: '18', '34' or '50' (an int or a trailing 'pt' is accepted; 'pt' gets torchvision's
      ImageNet encoder weights at init, see packnet_jax.train.imagenet_init).
    dropout: accepted for config compatibility, unused (as in the reference).
    dtype: compute dtype; params and outputs `utils.dtypes.param_dtype(dtype)` (float32 unless float64).
    remat: 'none' | 'full' | 'save_conv' (config `model.remat`): jax.checkpoint
      around every encoder residual block and decoder conv block (`fast.remat.remat`).

  __call__(rgb [B,H,W,3] in [0,1], train=False, all_scales=None): train → list of 4
  inverse depths (full res first), eval → [B,H,W,1]; `all_scales` overrides the
  choice. In train mode BatchNorm uses batch statistics and updates
  `batch_stats` (pass mutable=['batch_stats']).
  """
  version: Any = '18'
  dropout: float = 0.0
  dtype: Any = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, rgb, train=False, all_scales=None):
    num_layers = parse_resnet_version(self.version, 'DepthResNet', (18, 34, 50))
    layers.check_depth_input(rgb, 'DepthResNet')
    features = ResnetEncoder(num_layers, dtype=self.dtype, remat=self.remat, name='encoder')(rgb, train)
    disps = DepthDecoder(dtype=self.dtype, remat=self.remat, name='decoder')(features)
    inv_depths = [scale_inv_depth(d) for d in disps]
    return layers.select_scales(inv_depths, train, all_scales)
