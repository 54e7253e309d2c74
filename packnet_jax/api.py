"""`load_model`: a PackNet-SfM model (released `.ckpt` or converted directory) ready for inference.

  model = packnet_jax.load_model('PackNet01_MR_selfsup_K.ckpt')
  inv_depth = model.predict_inv_depth(images)           # [B,H,W,3] in [0,1] → [B,H,W,1]
  poses = model.predict_pose(target, contexts)          # [B,H,W,3], [B,N,H,W,3] → [B,N,6]

Both predictions run the eval-mode networks under `jax.jit` (one compile per
input shape). No torch is needed: `.ckpt` files are read by
`packnet_jax.convert`.
"""
import functools
import os

import jax
import jax.numpy as jnp

from packnet_jax.convert import converter
from packnet_jax.eval.metrics import post_process_inv_depth
from packnet_jax.geometry.checks import check_shape

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


@functools.partial(jax.jit, static_argnames=('net', 'flip_pp'))
def _inv_depth(net, variables, images, flip_pp):
  """Eval-mode inverse depth; with flip_pp one batched pass on [images; flipped images]."""
  if not flip_pp:
    return net.apply(variables, images, train=False).astype(jnp.float32)
  both = net.apply(variables, jnp.concatenate([images, jnp.flip(images, axis=2)], 0), train=False)
  both = both.astype(jnp.float32)
  return post_process_inv_depth(both[:images.shape[0]], both[images.shape[0]:])


@functools.partial(jax.jit, static_argnames=('net',))
def _pose(net, variables, target, contexts):
  return net.apply(variables, target, contexts, train=False).astype(jnp.float32)


class PackNetModel:
  """Depth and/or pose network with converted weights.

  Attributes:
    config: model_config dict (depth_net/pose_net {name, version, weights},
      image_shape, min_depth, max_depth, checkpoint_config, ...).
    variables: {'depth'|'pose': Flax variables} (device arrays).
    depth_net, pose_net: the Flax modules (None if the checkpoint lacks weights).
    messages: conversion notes when loaded from a `.ckpt`.
  """

  def __init__(self, config, variables, dtype=jnp.float32, source='', messages=()):
    self.config = config
    self.source = source
    self.messages = list(messages)
    self.variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    self.depth_net = self._build('depth', dtype)
    self.pose_net = self._build('pose', dtype)

  def _build(self, kind, dtype):
    spec = self.config.get(converter.NODES[kind])
    if kind not in self.variables or not spec:
      return None
    return converter.build_network(kind, spec, dtype=dtype)

  @property
  def image_shape(self):
    """Training (H, W) stored in the checkpoint config, or None."""
    shape = self.config.get('image_shape')
    return tuple(shape) if shape else None

  def _require(self, kind):
    net = self.depth_net if kind == 'depth' else self.pose_net
    if net is None:
      node = converter.NODES[kind]
      raise ValueError(f'{self.source}: checkpoint has no {node} weights ({node}: no weights in checkpoint); '
                       f'predict_{"inv_depth" if kind == "depth" else "pose"} is unavailable')
    return net

  def predict_inv_depth(self, images, flip_pp=False):
    """Inverse depth of float32 NHWC images in [0,1].

    Args:
      images: [B,H,W,3], H and W multiples of 32.
      flip_pp: fuse with the prediction on the flipped image (SPEC §5).

    Returns:
      [B,H,W,1] float32 inverse depth.
    """
    net = self._require('depth')
    images = jnp.asarray(images, jnp.float32)
    check_shape('images', images, ('B', 'H', 'W', 3))
    return _inv_depth(net, self.variables['depth'], images, bool(flip_pp))

  def predict_pose(self, target, contexts):
    """Pose vectors (tx, ty, tz, rx, ry, rz) of each context relative to the target.

    Args:
      target: [B,H,W,3] in [0,1]; contexts: [B,N,H,W,3].

    Returns:
      [B,N,6] float32.
    """
    net = self._require('pose')
    target = jnp.asarray(target, jnp.float32)
    contexts = jnp.asarray(contexts, jnp.float32)
    dims = check_shape('target', target, ('B', 'H', 'W', 3))
    check_shape('contexts', contexts, (dims['B'], 'N', dims['H'], dims['W'], 3))
    return _pose(net, self.variables['pose'], target, contexts)


def load_model(path, dtype='float32'):
  """Loads a `.ckpt` (converted in memory) or a directory from `python -m packnet_jax.convert`.

  Args:
    path: checkpoint file or converted directory.
    dtype: compute dtype, 'float32' (default) or 'bfloat16'/'float16'
      (parameters stay float32; outputs are float32).

  Raises:
    ValueError: path missing, unreadable checkpoint, unknown architecture,
      missing required weights, or an unknown dtype.
  """
  path = os.fspath(path)
  if dtype not in _DTYPES:
    raise ValueError(f'dtype: expected one of {tuple(_DTYPES)}, got {dtype!r}')
  model = converter.load_any(path)
  return PackNetModel(model.config, model.variables, dtype=_DTYPES[dtype], source=path,
                      messages=model.messages)
