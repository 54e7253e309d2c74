"""Shared pieces of the training tests: a tiny depth net and a tiny config.

`TinyDepthNet` has the depth-net interface (4 inverse-depth maps in train mode,
one in eval mode) at a fraction of DepthResNet's compile time; `version='bn'`
adds a BatchNorm so the cross-device statistics handling can be tested.
`tiny_config()` trains it with the real PoseNet on the vendored kitti_synth tree.
`fast_compiling(jitted)` compiles a jitted or pmapped step with the cheap XLA
options of lib.env at its first call (what these tests check is the loop);
`compile_loop_steps_fast(monkeypatch)` makes the training loop build its steps so.
"""
import pathlib
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from configs import default
from lib.env import FAST_COMPILE_OPTIONS
from packnet_jax.models import registry

KITTI_SYNTH = pathlib.Path(__file__).resolve().parents[1] / 'fixtures' / 'reference' / 'kitti_synth'


class TinyDepthNet(nn.Module):
  """conv → (optional BN) → 4 sigmoid heads at scales 1, ½, ¼, ⅛."""
  version: str = ''
  dropout: float = 0.0
  dtype: Any = jnp.float32
  remat: str = 'none'   # accepted like the real depth nets' (config model.remat); nothing to remat here

  @nn.compact
  def __call__(self, rgb, train=False):
    x = nn.elu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name='conv0')(rgb))
    if self.version == 'bn':
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name='bn')(x)
    outs = []
    for i in range(4):
      if i:
        x = nn.avg_pool(x, (2, 2), (2, 2))
      x = nn.elu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f'conv{i + 1}')(x))
      head = nn.Conv(1, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f'disp{i}')(x)
      outs.append(0.01 + 9.99 * nn.sigmoid(head.astype(jnp.float32)))
    return outs if train else outs[0]


def register_tiny_net():
  """Makes 'TinyDepthNet' buildable from a config (idempotent)."""
  registry.DEPTH_NETS.setdefault('TinyDepthNet', TinyDepthNet)


def tiny_config(model='SelfSupModel', max_steps=4):
  """A config that trains TinyDepthNet + PoseNet at 32×64 on kitti_synth."""
  register_tiny_net()
  config = default.get_config()
  config.name = 'tiny_' + model
  config.model.name = model
  config.model.depth_net.name = 'TinyDepthNet'
  config.model.pose_net.name = 'PoseNet'
  config.datasets.augmentation.image_shape = (32, 64)
  for split in (config.datasets.train, config.datasets.validation, config.datasets.test):
    split.dataset = 'KITTI'
    split.path = str(KITTI_SYNTH)
    split.split = 'split.txt'
  config.datasets.train.batch_size = 1
  config.datasets.validation.depth_type = 'groundtruth'
  config.datasets.validation.num_logs = 1
  if model == 'SemiSupModel':
    config.datasets.train.depth_type = 'velodyne'
  config.arch.max_steps = max_steps
  config.checkpoint.every_steps = 2
  config.checkpoint.async_save = False
  config.logging.log_every_steps = 1
  config.logging.image_every_steps = 0
  config.logging.progress_every_steps = 0
  config.eval.schedule = 'off'
  return config


def fast_compiling(jitted):
  """`jitted` (jax.jit / jax.pmap output) compiled with lib.env.FAST_COMPILE_OPTIONS at its first call.

  Every later call must have the first call's shapes: the loop compiles its step once.
  """
  compiled = []

  def call(*args):
    if not compiled:
      compiled.append(jitted.lower(*args).compile(compiler_options=FAST_COMPILE_OPTIONS))
    return compiled[0](*args)
  return call


def compile_loop_steps_fast(monkeypatch):
  """The training loop's jitted / pmapped steps compile with lib.env.FAST_COMPILE_OPTIONS (for this test)."""
  from packnet_jax.train import train_step  # pylint: disable=import-outside-toplevel
  for name in ('jit_train_step', 'pmap_train_step'):
    make = getattr(train_step, name)
    monkeypatch.setattr(train_step, name, lambda fn, make=make: fast_compiling(make(fn)))
