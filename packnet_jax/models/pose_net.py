"""PoseNet (SfMLearner-style, docs/reference.md §2.5), NHWC.

Input: channel concatenation [target, context_0, ..., context_{N-1}] in [0,1]
(no normalisation); seven stride-2 Conv+GroupNorm+ReLU blocks `conv1..conv7`
(children '0' = conv, '1' = GroupNorm), `pose_pred` 1×1 conv to 6·N, spatial
mean, ×0.01. Output [B,N,6] = (tx, ty, tz, rx, ry, rz) per context.
Initialised as the reference's `init_weights`: xavier_uniform_ kernels and zero
biases (the default of `layers.conv`), GroupNorm 1 / 0.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from packnet_jax.models import layers
from packnet_jax.models.fast import space_to_depth_conv

_CHANNELS = (16, 32, 64, 128, 256, 256, 256)
_KERNELS = (7, 5, 3, 3, 3, 3, 3)
POSE_SCALE = 0.01


class ConvGN(nn.Module):
  """Conv(k, stride 2, pad (k−1)/2) ('0') → GroupNorm(16) ('1') → ReLU.

  `blocks`: compute the convolution over 2×2 pixel blocks (models/fast/space_to_depth_conv.py;
  same parameters, faster for the 9-channel stem on CPU).
  """
  features: int
  kernel_size: int
  dtype: Any = jnp.float32
  blocks: bool = False

  @nn.compact
  def __call__(self, x):
    even = x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0
    x = layers.conv(self.features, self.kernel_size, 2, (self.kernel_size - 1) // 2, name='0',
                    dtype=self.dtype,
                    conv_general_dilated=space_to_depth_conv.stride2_conv if self.blocks and even else None)(x)
    return layers.group_norm(name='1', dtype=self.dtype, activation=nn.relu)(x)


def mean_pose_head(x, num_contexts):
  """[B,h,w,6·N] → spatial mean ×0.01 → [B,N,6] (float32, or float64 from float64 activations)."""
  pose = jnp.mean(layers.to_output_dtype(x), axis=(1, 2))
  return POSE_SCALE * pose.reshape(pose.shape[0], num_contexts, 6)


class PoseNet(nn.Module):
  """Attributes: nb_ref_imgs (number of context frames, default 2 as the reference),
  rotation_mode ('euler' only), dtype (compute dtype).

  __call__(target [B,H,W,3], contexts [B,N,H,W,3], train=False) → [B,N,6]; N must
  equal nb_ref_imgs. `train` is accepted for a uniform API (no BN/dropout here).
  """
  nb_ref_imgs: int = 2
  rotation_mode: str = 'euler'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, target, contexts, train=False):
    del train
    if self.rotation_mode != 'euler':
      raise ValueError(f"PoseNet: rotation_mode: only 'euler' is supported, got {self.rotation_mode!r}")
    layers.check_pose_inputs(target, contexts, 'PoseNet', self.nb_ref_imgs)
    n = self.nb_ref_imgs
    # [target, contexts] → [B,H,W,3(N+1)] (target's 3 channels first, then each context's): frames
    # joined along a major axis, then one transpose; XLA:CPU is slower joining 3-channel minor axes.
    frames = jnp.concatenate([target[:, None], contexts], axis=1)
    x = jnp.moveaxis(frames, 1, 3).reshape(*target.shape[:3], 3 * (n + 1)).astype(self.dtype)
    for i, (features, k) in enumerate(zip(_CHANNELS, _KERNELS)):
      x = ConvGN(features, k, dtype=self.dtype, blocks=i == 0, name=f'conv{i + 1}')(x)
    x = layers.conv(6 * n, 1, 1, 0, name='pose_pred', dtype=self.dtype)(x)
    return mean_pose_head(x, n)
