"""Continuing from a reference `.ckpt`: Adam moments, Adam step and epoch are taken over."""
import collections

import jax
import numpy as np
import optax
import pytest

from lib.fixtures import load_json
from lib import recipe
from lib import tiny_training
from lib import torch_writer

from configs import demo
from packnet_jax.models import sfm_model
from packnet_jax.train import continue_from_ckpt
from packnet_jax.train import model_init
from packnet_jax.train import optim
from packnet_jax.train import train
from packnet_jax.train.train_state import TrainState

STEPS_PER_EPOCH = 5
EPOCH = 3
ADAM_STEP = 17


def _write_ckpt(path):
  """A DepthResNet18 + PoseNet `.ckpt` whose Adam state has known moments."""
  state_dict, opt_state, groups, pid = collections.OrderedDict(), {}, [], 0
  rng = np.random.RandomState(0)
  for prefix, net, group in (('model.depth_net.', 'DepthResNet18', 'Depth'),
                             ('model.pose_net.', 'PoseNet', 'Pose')):
    entries = [(e['key'], e['shape']) for e in load_json(f'net_{net}.json')['state_dict']]
    ids = []
    for key, value in recipe.recipe_state_dict(entries).items():
      state_dict[prefix + key] = value
      if key.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
        continue
      opt_state[pid] = {'step': np.asarray(float(ADAM_STEP), np.float32),
                        'exp_avg': (1e-3 * rng.standard_normal(value.shape)).astype(np.float32),
                        'exp_avg_sq': (1e-6 * rng.random_sample(value.shape)).astype(np.float32)}
      ids.append(pid)
      pid += 1
    groups.append({'name': group, 'lr': 2e-4, 'params': ids})
  torch_writer.save_zip({'config': {}, 'epoch': EPOCH, 'state_dict': state_dict,
                         'optimizer': {'state': opt_state, 'param_groups': groups}}, path)
  return state_dict, opt_state


@pytest.fixture(scope='module')
def continued(tmp_path_factory):
  path = tmp_path_factory.mktemp('ckpt') / 'run.ckpt'
  state_dict, opt_state = _write_ckpt(path)
  config = demo.get_config()
  config.optim.scheduler.step_size = 2   # so the resumed StepLR position shows in the lr
  model = model_init.build_model(config)
  # Only the shapes matter here (the moments and step come from the .ckpt): zeros, not a costly init.
  shapes = jax.eval_shape(lambda rng: sfm_model.init_variables(model, rng, (64, 64), 2), jax.random.PRNGKey(0))
  variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  tx, _ = optim.optimizer_from_config(config.optim, STEPS_PER_EPOCH)
  state = TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=tx, rng=jax.random.PRNGKey(1))
  return continue_from_ckpt.continue_training(state, str(path), STEPS_PER_EPOCH), state_dict, opt_state


def _adam_states(opt_state):
  return [s for s in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)]


def test_step_continues_after_stored_epoch(continued):
  state, _, _ = continued
  assert int(state.step) == (EPOCH + 1) * STEPS_PER_EPOCH
  counts = [int(s.count) for s in jax.tree_util.tree_leaves(
      state.opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))
            if isinstance(s, optax.ScaleByScheduleState)]
  assert counts == [(EPOCH + 1) * STEPS_PER_EPOCH] * 2


def test_moments_are_the_stored_ones_in_flax_layout(continued):
  state, state_dict, opt_state = continued
  depth_adam, pose_adam = _adam_states(state.opt_state)
  assert int(depth_adam.count) == ADAM_STEP and int(pose_adam.count) == ADAM_STEP
  keys = [k for k in state_dict if not k.endswith(('running_mean', 'running_var',
                                                   'num_batches_tracked'))]
  pid = {k: i for i, k in enumerate(keys)}
  conv1 = opt_state[pid['model.depth_net.encoder.encoder.conv1.weight']]
  got = depth_adam.mu['depth_net']['encoder']['encoder']['conv1']['kernel']
  np.testing.assert_array_equal(got, conv1['exp_avg'].transpose(2, 3, 1, 0))   # OIHW → HWIO
  pred = opt_state[pid['model.pose_net.pose_pred.bias']]
  np.testing.assert_array_equal(pose_adam.nu['pose_net']['pose_pred']['bias'], pred['exp_avg_sq'])


def test_next_update_is_torch_adam_from_the_stored_moments(continued):
  """One more step equals torch Adam's closed form with the stored m, v and step."""
  state, state_dict, opt_state = continued
  grads = jax.tree_util.tree_map(np.ones_like, state.params)
  updates, _ = jax.jit(state.tx.update)(grads, state.opt_state, state.params)  # one program, not ~2000 ops
  keys = [k for k in state_dict if not k.endswith(('running_mean', 'running_var',
                                                   'num_batches_tracked'))]
  entry = opt_state[keys.index('model.pose_net.pose_pred.bias')]
  b1, b2, eps, t = 0.9, 0.999, 1e-8, ADAM_STEP + 1
  lr = 2e-4 * 0.5 ** ((EPOCH + 1) // 2)   # StepLR(step_size=2, gamma=0.5) at epoch EPOCH + 1
  m = b1 * entry['exp_avg'] + (1 - b1) * 1.0
  v = b2 * entry['exp_avg_sq'] + (1 - b2) * 1.0
  expected = -lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
  np.testing.assert_allclose(updates['pose_net']['pose_pred']['bias'], expected, rtol=2e-5)


def test_a_training_run_starts_after_the_stored_epoch_from_its_weights(tmp_path):
  """train_and_evaluate with model.continue_training: the step counter (and with it the data position)
  starts after the .ckpt's epoch, and the networks hold the .ckpt's weights."""
  path = tmp_path / 'run.ckpt'
  state_dict, _ = _write_ckpt(path)
  assert jax.device_count() == 2   # kitti_synth's 4 training samples at batch 1 per device: 2 steps per epoch
  start = (EPOCH + 1) * 2
  config = tiny_training.tiny_config(max_steps=start)   # nothing left to train: no train step compiles
  config.model.depth_net.name, config.model.depth_net.version = 'DepthResNet', '18'
  config.model.checkpoint_path = str(path)
  config.model.continue_training = True
  result = train.train_and_evaluate(config, tmp_path / 'run')
  assert int(result.state.step) == start and result.history == []
  np.testing.assert_array_equal(result.state.params['pose_net']['pose_pred']['bias'],
                                state_dict['model.pose_net.pose_pred.bias'])
  np.testing.assert_array_equal(result.state.params['depth_net']['encoder']['encoder']['conv1']['kernel'],
                                state_dict['model.depth_net.encoder.encoder.conv1.weight'].transpose(2, 3, 1, 0))
