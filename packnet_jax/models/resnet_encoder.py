"""ResNet 18/34/50 encoder as used by DepthResNet and PoseResNet (docs/reference.md §2.4, §2.6), NHWC.

A torchvision ResNet (BasicBlock / Bottleneck with the stride on the 3×3 conv)
wrapped like the reference `ResnetEncoder`: input normalised with
(x − 0.45) / 0.225, returns the 5 feature maps [f0 @½, f1 @¼, f2 @⅛, f3 @1/16,
f4 @1/32]. The unused classifier `fc` is created at init so parameter counts and
checkpoints match the reference. Any number of input channels (3 or 6).

Initialisation as torchvision's ResNet constructor (and the reference's
multi-image ResNet, which repeats it): convolutions kaiming_normal_ with fan_out
and the ReLU gain, BatchNorm 1 / 0; `fc` keeps torch's default Linear init.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from packnet_jax.models import initializers, layers
from packnet_jax.models.fast.max_pool import max_pool_3x3_s2
from packnet_jax.models.fast.remat import remat
from packnet_jax.utils.dtypes import param_dtype

# num_layers → (block type, blocks per stage).
RESNET_STAGES = {18: ('basic', (2, 2, 2, 2)), 34: ('basic', (3, 4, 6, 3)), 50: ('bottleneck', (3, 4, 6, 3))}
_EXPANSION = {'basic': 1, 'bottleneck': 4}


class BatchNorm(nn.Module):
  """torch BatchNorm2d semantics (eps 1e-5, momentum 0.1).

  Train mode normalises with the biased batch variance and updates
  `running_var` with the unbiased one (n/(n−1), n = B·H·W), unlike Flax's
  BatchNorm; train-mode calls must pass mutable=['batch_stats'].
  Variables: params scale/bias, batch_stats mean/var (statistics in `utils.dtypes.param_dtype`).
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    c = x.shape[-1]
    stats_dtype = param_dtype(self.dtype)
    scale = self.param('scale', nn.initializers.ones, (c,), stats_dtype)
    bias = self.param('bias', nn.initializers.zeros, (c,), stats_dtype)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), stats_dtype))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), stats_dtype))
    x32 = jnp.asarray(x, stats_dtype)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axes)
      var = jnp.mean(jnp.square(x32 - mean), axes)
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
        ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x32 - mean) * (scale * jnp.reciprocal(jnp.sqrt(var + self.epsilon))) + bias
    return y.astype(self.dtype)


class Downsample(nn.Module):
  """Shortcut projection: '0' = 1×1 strided conv (no bias), '1' = BatchNorm."""
  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    x = layers.conv(self.features, 1, self.stride, 0, use_bias=False, name='0', dtype=self.dtype,
                    kernel_init=initializers.kaiming_normal_fan_out)(x)
    return BatchNorm(dtype=self.dtype, name='1')(x, train)


class ResNetBlock(nn.Module):
  """torchvision BasicBlock (kind='basic') or Bottleneck (kind='bottleneck')."""
  planes: int
  stride: int = 1
  kind: str = 'basic'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    dt = self.dtype
    out_features = self.planes * _EXPANSION[self.kind]
    if self.kind == 'basic':
      convs = [(self.planes, 3, self.stride, 1), (self.planes, 3, 1, 1)]
    else:
      convs = [(self.planes, 1, 1, 0), (self.planes, 3, self.stride, 1), (out_features, 1, 1, 0)]
    out = x
    for i, (features, k, s, p) in enumerate(convs, start=1):
      out = layers.conv(features, k, s, p, use_bias=False, name=f'conv{i}', dtype=dt,
                        kernel_init=initializers.kaiming_normal_fan_out)(out)
      out = BatchNorm(dtype=dt, name=f'bn{i}')(out, train)
      if i < len(convs):
        out = nn.relu(out)
    identity = x
    if self.stride != 1 or x.shape[-1] != out_features:
      identity = Downsample(out_features, self.stride, dtype=dt, name='downsample')(x, train)
    return nn.relu(out + identity)


class ResNet(nn.Module):
  """torchvision ResNet trunk returning the 5 feature maps (no normalisation).

  `remat` ('none' | 'full' | 'save_conv', see `fast.remat.remat`) wraps every residual block.
  """
  num_layers: int = 18
  dtype: Any = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, x, train=False):
    if self.num_layers not in RESNET_STAGES:
      raise ValueError(f'ResNet: num_layers: expected one of {sorted(RESNET_STAGES)}, got {self.num_layers!r}')
    kind, blocks = RESNET_STAGES[self.num_layers]
    dt = self.dtype
    x = layers.conv(64, 7, 2, 3, use_bias=False, name='conv1', dtype=dt,
                    kernel_init=initializers.kaiming_normal_fan_out)(x)
    features = [nn.relu(BatchNorm(dtype=dt, name='bn1')(x, train))]
    x = max_pool_3x3_s2(features[0])
    for i, (planes, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks)):
      # torchvision `layerN`: blocks '0', '1', ...; the first one carries the stride.
      block = functools.partial(remat(ResNetBlock, self.remat, static_argnums=(2,)), planes,
                                kind=kind, dtype=dt)
      x = layers.Stage(block, num_blocks, 1 if i == 0 else 2, name=f'layer{i + 1}')(x, train)
      features.append(x)
    if self.is_initializing():
      # The classifier is never used, but exists in the reference state dict.
      nn.Dense(1000, dtype=dt, param_dtype=param_dtype(dt), name='fc',
               kernel_init=initializers.torch_default_kernel,
               bias_init=initializers.torch_default_bias(x.shape[-1]))(jnp.zeros((1, x.shape[-1]), dt))
    return features


class ResnetEncoder(nn.Module):
  """(x − 0.45) / 0.225 → ResNet (child 'encoder'); returns [f0, f1, f2, f3, f4]."""
  num_layers: int = 18
  dtype: Any = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, x, train=False):
    x = (jnp.asarray(x, param_dtype(self.dtype)) - 0.45) / 0.225
    return ResNet(self.num_layers, dtype=self.dtype, remat=self.remat, name='encoder')(x.astype(self.dtype), train)


def parse_resnet_version(version, net_name, allowed):
  """'18', 18, '50pt' → 18 / 50 (the 'pt' suffix only selects ImageNet init in the reference)."""
  text = str(version)
  if len(text) < 2 or not text[:2].isdigit() or text[2:] not in ('', 'pt') or int(text[:2]) not in allowed:
    raise ValueError(f'{net_name}: version: expected one of {sorted(allowed)} (optionally with "pt"), '
                     f'got {version!r}')
  return int(text[:2])
