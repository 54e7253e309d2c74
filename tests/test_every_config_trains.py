"""Every experiment file in configs/ trains: load, validate, build its networks, run train steps.

Only data paths and the image shape are overridden (plus, for ImageNet-initialised
'pt' versions, the path of the encoder weights), so a config whose keys, networks,
loss or data settings rot fails here. Runs on one device (jit), the layout of a
one-GPU user, at a tiny shape on the synthetic trees. The DDAD configs run on the
synthetic DGP scene of tools/make_synthetic_ddad.py.
"""
import importlib
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lib.env import FAST_COMPILE_OPTIONS
from lib.synthetic import make_synthetic_kitti
from lib import imagenet_recipe
from lib import torch_writer

from packnet_jax import config_utils
from packnet_jax.data import config as data_config
from packnet_jax.models import sfm_model
from packnet_jax.train import model_init
from packnet_jax.train import optim
from packnet_jax.train import train
from packnet_jax.train import train_step as train_step_lib
from packnet_jax.train.train_state import TrainState
from packnet_jax.train.train_state import step_rng

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / 'configs').glob('*.py') if p.stem not in ('__init__', 'default'))
SHAPE = (32, 64)


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
  """Synthetic KITTI and DDAD trees, and an ImageNet-format ResNet-18 file."""
  root = tmp_path_factory.mktemp('trees')
  make_synthetic_kitti(root / 'kitti', 16, 32, 96)
  subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_synthetic_ddad.py'), '--output',
                  str(root / 'ddad'), '--frames', '8', '--val_frames', '3', '--height', '32', '--width', '64'],
                 check=True, capture_output=True)
  torch_writer.save_zip(imagenet_recipe.torchvision_state_dict(18), root / 'resnet18-f37072fd.pth')
  return {'kitti': root / 'kitti', 'ddad': root / 'ddad' / 'ddad.json',
          'images': root / 'kitti' / '2011_09_26' / '2011_09_26_drive_0001_sync' / 'image_02' / 'data',
          'resnet18': root / 'resnet18-f37072fd.pth'}


def point_at_synthetic_data(config, trees):
  """Overrides data paths and the image shape only."""
  config.datasets.augmentation.image_shape = SHAPE
  for mode, node in (('train', config.datasets.train), ('val', config.datasets.validation),
                     ('test', config.datasets.test)):
    if node.dataset == 'KITTI':
      node.path, node.split = str(trees['kitti']), f'splits/{mode}.txt'
    elif node.dataset in ('DGP', 'DDAD'):
      node.path = str(trees['ddad'])
    elif node.dataset in ('Image', 'Video'):
      node.path = str(trees['images'])
  for net in ('depth_net', 'pose_net'):
    if config.model[net].version.endswith('pt'):
      config.model[net].pretrained_encoder = str(trees['resnet18'])
  return config


def _setup(name, trees):
  """(config, train batches iterator, model) of an experiment file pointed at the synthetic data."""
  config = point_at_synthetic_data(importlib.import_module(f'configs.{name}').get_config(), trees)
  config_utils.validate_config(config)
  train_cfg = config_utils.dataset_config(config, 'train')
  source = data_config.build_source(train_cfg, 'train', seed=config.arch.seed)
  batches = data_config.make_train_iterator(
      train_cfg, batch_size=config.datasets.train.batch_size, num_devices=1, seed=config.arch.seed,
      shuffle=config.datasets.train.shuffle, source=source, process_index=0, process_count=1)
  return config, batches, model_init.build_model(config)


def _step_fn(config, model):
  return train_step_lib.make_train_step(model, model_init.loss_options(config),
                                        flip_lr_prob=config.model.loss.flip_lr_prob)


def _device_batch(batches):
  return {k: jnp.asarray(v[0]) for k, v in train_step_lib.model_inputs(next(batches)).items()}


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_config_traces_its_train_step(name, trees):
  """Data, networks, losses and optimiser of every config fit together (traced, not compiled)."""
  config, batches, model = _setup(name, trees)
  variables = jax.eval_shape(lambda rng: sfm_model.init_variables(
      model, rng, SHAPE, num_context=max(1, model_init.num_contexts(config))), jax.random.PRNGKey(0))
  tx, _ = optim.optimizer_from_config(config.optim, 10)
  state = jax.eval_shape(lambda: TrainState.create(params=variables['params'], tx=tx, rng=jax.random.PRNGKey(0),
                                                   batch_stats=variables.get('batch_stats', {})))
  new_state, metrics = jax.eval_shape(_step_fn(config, model), state, _device_batch(batches),
                                      jax.random.PRNGKey(1))
  assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
  assert metrics['loss'].shape == () and metrics['loss'].dtype == jnp.float32
  assert ('grad_norm_pose' in metrics) == (model.pose_net is not None)


# Real train steps of every config are marked slow (suite-time budget: each config costs 1-2 CPU-minutes on
# 2 cores, see the durations in the issue-11 closing notes); with --runslow all of them train here. In CI
# every config is traced end to end by test_config_traces_its_train_step, demo.py trains as the README's
# command (test_cli_one_device_end_to_end runs `main` on it with only paths, shape and schedule overridden; .ci/run
# runs the demo itself), ddad.py's CLI evaluation runs in test_ddad_end_to_end (its training there is slow too), and PackNet01's step is compiled in
# test_gpu_export / test_remat / test_sfm_model.
@pytest.mark.slow
@pytest.mark.parametrize('name', EXPERIMENTS)
def test_config_trains_two_steps(name, trees):
  config, batches, model = _setup(name, trees)
  state, _ = train.create_train_state(config, model, steps_per_epoch=10)
  step = train_step_lib.jit_train_step(_step_fn(config, model))
  before = jax.tree_util.tree_map(np.asarray, state.params)
  device_state = jax.device_put(state)
  compiled = None
  for i in range(2):
    args = (device_state, _device_batch(batches), step_rng(jnp.asarray(state.rng), i))
    # What is checked here is the config, not XLA's code: compile quickly (lib.env), the same program.
    compiled = compiled or step.lower(*args).compile(compiler_options=FAST_COMPILE_OPTIONS)
    device_state, metrics = compiled(*args)
    assert np.isfinite(float(metrics['loss'])), (name, i, metrics)
    assert int(metrics['bad_streak']) == 0
  after = jax.device_get(device_state.params)
  for net in before:   # both networks learn (a few arrays, e.g. a ResNet's unused fc, get no gradient)
    pairs = list(zip(jax.tree_util.tree_leaves(before[net]), jax.tree_util.tree_leaves(after[net])))
    moved = sum(not np.array_equal(a, b) for a, b in pairs)
    assert moved >= 0.9 * len(pairs), f'{name}: only {moved} of {len(pairs)} {net} arrays changed in 2 steps'
  # Its evaluation split builds too, where it has one (an image folder has no ground truth).
  if config.datasets.validation.path:
    eval_cfg = config_utils.dataset_config(config, 'validation')
    assert len(data_config.build_source(eval_cfg, 'validation')) > 0
