"""`load_model`: a PackNet-SfM model ready for inference, from any of the three model sources.

A released `.ckpt`, a directory from `python -m packnet_jax.convert`, or a
training workdir (its newest complete checkpoint, or `step=`): this is the one
place that turns such a path into networks, and every CLI goes through it.

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
from packnet_jax.eval import predict as predict_lib
from packnet_jax.utils.checks import check_shape
from packnet_jax.models import registry

_inv_depth = jax.jit(predict_lib.inv_depth, static_argnames=('net', 'flip_pp'))


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
    spec = self.config.get(registry.NETWORKS[kind])
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
      node = registry.NETWORKS[kind]
      raise ValueError(f'{self.source}: checkpoint has no {node} weights ({node}: no weights in checkpoint); '
                       f'predict_{"inv_depth" if kind == "depth" else "pose"} is unavailable')
    return net

  def predict_inv_depth(self, images, flip_pp=False):
    """Inverse depth of float32 NHWC images in [0,1].

    Args:
      images: [B,H,W,3], H and W multiples of 32.
      flip_pp: fuse with the prediction on the flipped image (docs/reference.md §5).

    Returns:
      [B,H,W,1] float32 inverse depth.
    """
    net = self._require('depth')
    images = jnp.asarray(images, jnp.float32)
    check_shape('images', images, ('B', 'H', 'W', 3))
    return _inv_depth(net, self.variables['depth'], images, flip_pp=bool(flip_pp))

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


def load_model(path, dtype='float32', step=None):
  """Loads a model from a `.ckpt`, a converted directory or a training workdir.

  Args:
    path: released `.ckpt` (converted in memory), a directory written by
      `python -m packnet_jax.convert`, or a training workdir (`--workdir` of
      `python -m packnet_jax.main`: its config.json and newest complete checkpoint).
    dtype: compute dtype, 'float32' (default) or 'bfloat16'/'float16'
      (parameters stay float32; outputs are float32).
    step: for a training workdir, the checkpoint step (default: the newest), or 'best' (the
      best kept checkpoint by the run's checkpoint.monitor).

  Raises:
    ValueError: path missing, unreadable checkpoint, unknown architecture,
      missing required weights, an unknown dtype, or `step` for a non-workdir.
  """
  path = os.fspath(path)
  compute_dtype = registry.dtype(dtype)
  from packnet_jax.workdir import run_files as workdir  # pylint: disable=import-outside-toplevel
  if workdir.is_workdir(path):
    config = workdir.model_spec(workdir.read_config(path))
    variables, step = workdir.restore_networks(path, step)
    return PackNetModel(config, variables, dtype=compute_dtype, source=f'{path} (step {step})')
  if step is not None:
    raise ValueError(f'--step: only a training workdir has several checkpoints; {path} is not one')
  if not os.path.exists(path):
    raise ValueError(f'{path}: not found (expected a .ckpt file, a converted model directory or a '
                     'training workdir)')
  model = converter.load_any(path)
  if model.config.get(converter.ENCODER):
    raise ValueError(f'{path}: holds ImageNet encoder weights only (torchvision ResNet-'
                     f'{model.config[converter.ENCODER]["num_layers"]}), no depth or pose network; use it for '
                     "training as model.<net>.pretrained_encoder with a 'pt' version")
  return PackNetModel(model.config, model.variables, dtype=compute_dtype, source=path,
                      messages=model.messages)
