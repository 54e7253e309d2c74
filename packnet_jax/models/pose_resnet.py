"""PoseResNet: 6-channel ResNet encoder + monodepth2 pose decoder (docs/reference.md §2.6), NHWC.

Each context is processed separately with the target (so train-mode BatchNorm
sees the same batches, and updates the running stats once per context, as the
reference). The decoder predicts (rot, trans) for 2 frames; only slot 0 is
used and it is reordered to (trans, rot). Flax names mirror `encoder.encoder.*`
and `decoder.net.<N>.*`.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from packnet_jax.models import initializers, layers
from packnet_jax.models.pose_net import mean_pose_head
from packnet_jax.models.resnet_encoder import ResnetEncoder, parse_resnet_version

_NUM_FRAMES = 2  # The reference decoder always predicts for 2 frames; slot 0 is used.


class PoseDecoderNet(nn.Module):
  """The reference `net` ModuleList: '0' squeeze 1×1 → ReLU, '1','2' 3×3 → ReLU, '3' 1×1 → 6·2.

  No init of its own in the reference: torch's default Conv2d initialisation.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    specs = ((256, 1, 0), (256, 3, 1), (256, 3, 1), (6 * _NUM_FRAMES, 1, 0))
    for i, (features, k, p) in enumerate(specs):
      x = layers.conv(features, k, 1, p, name=str(i), dtype=self.dtype,
                      **initializers.torch_default_conv(x.shape[-1], k))(x)
      if i < len(specs) - 1:
        x = nn.relu(x)
    return x


class PoseDecoder(nn.Module):
  """f4 → child 'net' → mean ×0.01 → [B,2,6] (rot, trans) per predicted frame."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, f4):
    return mean_pose_head(PoseDecoderNet(dtype=self.dtype, name='net')(f4), _NUM_FRAMES)


class PoseResNet(nn.Module):
  """Attributes: version ('18' or '50', int or 'pt' suffix accepted; '34' is rejected
  as in the reference), dtype (compute dtype).

  __call__(target [B,H,W,3], contexts [B,N,H,W,3], train=False) → [B,N,6]
  (tx, ty, tz, rx, ry, rz). Train mode needs mutable=['batch_stats'].
  """
  version: Any = '18'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, target, contexts, train=False):
    num_layers = parse_resnet_version(self.version, 'PoseResNet', (18, 50))
    layers.check_pose_inputs(target, contexts, 'PoseResNet')
    encoder = ResnetEncoder(num_layers, dtype=self.dtype, name='encoder')
    decoder = PoseDecoder(dtype=self.dtype, name='decoder')
    outputs = []
    for c in range(contexts.shape[1]):
      features = encoder(jnp.concatenate([target, contexts[:, c]], axis=-1), train)
      rot_trans = decoder(features[-1])[:, 0]  # [B,6] = (rot, trans)
      outputs.append(jnp.concatenate([rot_trans[:, 3:], rot_trans[:, :3]], axis=-1))
    return jnp.stack(outputs, axis=1)
