"""The SfM model: a depth net and a pose net run together (docs/reference.md §4).

`SfmModel`'s variables are
{'params': {'depth_net': …, 'pose_net': …}, 'batch_stats': {'depth_net'?: …, 'pose_net'?: …}},
so each network's weights can be loaded, optimised (per-network learning rate) and saved
separately. In training it applies the reference's depth-net flip augmentation
(docs/reference.md §4.5) and nearest-upsamples the 4 inverse-depth maps to full resolution when
`upsample_depth_maps` (docs/reference.md §4.1). The objective these outputs feed is
`losses/objective.py`.
"""
import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from packnet_jax.geometry.pose import pose_vec_to_mat
from packnet_jax.geometry.sampling import resize_nearest_torch
from packnet_jax.utils import xla_flags
from packnet_jax.utils.dtypes import param_dtype


def flip_lr(x):
  """Horizontal flip of NHWC maps."""
  return x[:, :, ::-1, :]


class SfmModel(nn.Module):
  """Depth net + optional pose net.

  Attributes:
    depth_net: module mapping rgb [B,H,W,3] to inverse depths (list of 4 maps
      in train mode, one [B,H,W,1] map in eval mode).
    pose_net: module mapping (target [B,H,W,3], contexts [B,N,H,W,3]) to pose
      vectors [B,N,6]; None for depth-only use.
    upsample_depth_maps: in train mode, nearest-upsample every inverse-depth
      map to the input resolution (reference default True).
    rotation_mode: how the pose vectors' last 3 numbers are read ('euler').
  """
  depth_net: nn.Module
  pose_net: Optional[nn.Module] = None
  upsample_depth_maps: bool = True
  rotation_mode: str = 'euler'

  def depth(self, rgb, flip=False, train=False):
    """Inverse depths as a list (full resolution first).

    `flip` (a Python or traced bool) feeds the horizontally flipped image to
    the depth net and flips every output back, so the result is aligned with
    `rgb` either way.
    """
    inputs = jnp.where(flip, flip_lr(rgb), rgb)
    out = self.depth_net(inputs, train=train)
    inv_depths = list(out) if isinstance(out, (list, tuple)) else [out]
    inv_depths = [jnp.where(flip, flip_lr(d), d) for d in inv_depths]
    if train and self.upsample_depth_maps:
      size = rgb.shape[1:3]
      inv_depths = [d if d.shape[1:3] == size else resize_nearest_torch(d, size)
                    for d in inv_depths]
    return inv_depths

  def poses(self, rgb, rgb_context, train=False):
    """Target → context poses [B,N,4,4] (used as the contexts' Tcw)."""
    vec = self.pose_net(rgb, rgb_context, train=train)
    return pose_vec_to_mat(vec.astype(param_dtype(vec.dtype)), self.rotation_mode)

  def __call__(self, rgb, rgb_context=None, flip=False, train=False):
    """Returns (inv_depths list, poses [B,N,4,4] or None)."""
    inv_depths = self.depth(rgb, flip=flip, train=train)
    poses = None
    if self.pose_net is not None and rgb_context is not None:
      poses = self.poses(rgb, rgb_context, train=train)
    return inv_depths, poses


def init_inputs(model, image_shape, num_context, batch_size):
  """The zero (rgb, contexts) that the initialisation runs the model on (contexts None without a pose net)."""
  h, w = image_shape
  rgb = jnp.zeros((batch_size, h, w, 3), jnp.float32)
  ctx = jnp.zeros((batch_size, num_context, h, w, 3), jnp.float32) if model.pose_net is not None else None
  return rgb, ctx


def init_variables(model, rng, image_shape, num_context=2, batch_size=1):
  """Initialises the model's variables on zero inputs of the given image shape.

  One compiled program (instead of thousands of eager operations), compiled as a
  program that runs once (`xla_flags.run_once`).
  """
  rgb, ctx = init_inputs(model, image_shape, num_context, batch_size)
  variables = xla_flags.run_once(functools.partial(model.init, train=False), rng, rgb, ctx)
  return {k: v for k, v in variables.items()}


def variable_shapes(model, image_shape, num_context=2, batch_size=1):
  """`init_variables`'s result as jax.ShapeDtypeStructs, from shapes alone (nothing compiles or runs)."""
  rgb, ctx = init_inputs(model, image_shape, num_context, batch_size)
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), rgb, ctx)
  return {k: v for k, v in variables.items()}

