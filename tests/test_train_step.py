"""The pure train step: 1 device vs pmap over 2, BatchNorm sync, non-finite skip, optimiser."""
import functools
import logging

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import nonfinite
from lib import tiny_training
from packnet_jax.losses import objective
from packnet_jax.models import sfm_model
from packnet_jax.parallel import device_layout
from packnet_jax.train import optim
from packnet_jax.train import train_step as ts
from packnet_jax.train.train_state import TrainState

H, W = 32, 64
# One loss scale: a quarter of the photometric loss's compile time; the scale count does not matter
# for what is tested here (the full loss is checked against the reference in test_sfm_model).
LOSS_OPTIONS = objective.LossOptions(num_scales=1)


class TinyPoseNet(nn.Module):
  """PoseNet's interface (target, contexts [B,N,H,W,3] → [B,N,6]) at a fraction of its compile time.

  What these tests check (pmap vs one device, BatchNorm sync, skipped steps) does not depend on the
  pose architecture; the real PoseNet is trained by test_train_loop and checked by test_sfm_model.
  """

  @nn.compact
  def __call__(self, target, contexts, train=False):
    n = contexts.shape[1]
    x = jnp.concatenate([target] + [contexts[:, j] for j in range(n)], axis=-1)
    x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name='conv')(x))
    x = nn.Conv(6 * n, (1, 1), name='pose_pred')(x)
    return 0.01 * jnp.mean(x, axis=(1, 2)).reshape(-1, n, 6)


def _batch(n=4, seed=0):
  rng = np.random.RandomState(seed)
  rgb = rng.uniform(size=(n, H, W, 3)).astype(np.float32)
  # Contexts: the target shifted by a pixel, plus noise (a plausible small motion).
  ctx = np.stack([np.roll(rgb, 1, axis=2), np.roll(rgb, -1, axis=2)], axis=1)
  ctx = np.clip(ctx + 0.05 * rng.standard_normal(ctx.shape), 0, 1).astype(np.float32)
  K = np.tile(np.array([[40., 0, W / 2], [0, 40., H / 2], [0, 0, 1]], np.float32), (n, 1, 1))
  return {'rgb': rgb, 'rgb_context': ctx, 'intrinsics': K}


@functools.lru_cache(maxsize=None)
def _setup(version='', sgd=False):
  """(model, host TrainState). SGD makes parameters a linear function of the gradients:
  Adam's first step moves every weight by ±lr whatever the gradient's size, so
  float-noise-sized gradients (e.g. biases in front of GroupNorm) would flip sign."""
  model = sfm_model.SfmModel(depth_net=tiny_training.TinyDepthNet(version=version), pose_net=TinyPoseNet())
  variables = sfm_model.init_variables(model, jax.random.PRNGKey(0), (H, W))
  if sgd:
    tx = optax.sgd(0.1)
  else:
    tx, _ = optim.create_optimizer(depth_lr=1e-2, pose_lr=1e-2, steps_per_epoch=10)
  state = TrainState.create(params=variables['params'], batch_stats=variables.get('batch_stats', {}),
                            tx=tx, rng=jax.random.PRNGKey(1))
  return model, jax.device_get(state)


@functools.lru_cache(maxsize=None)
def _compiled(version='', sgd=False, pmapped=False, inject=()):
  """Compiled train steps, shared by the tests (compiling dominates their run time)."""
  model, _ = _setup(version, sgd)
  fn = ts.make_train_step(model, LOSS_OPTIONS, flip_lr_prob=0.5,
                          axis_name=device_layout.AXIS_NAME if pmapped else None)
  if inject:
    fn = nonfinite.nan_at_steps(fn, inject)
  return ts.pmap_train_step(fn) if pmapped else jax.jit(fn)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _split_batch(batch, num_devices):
  """[B, ...] → [num_devices, B / num_devices, ...], the pmapped step's batch layout."""
  return jax.tree_util.tree_map(lambda x: x.reshape((num_devices, -1) + x.shape[1:]), batch)


@pytest.mark.parametrize('flip_seed', [0, 3])
def test_pmap_equals_single_device(flip_seed):
  assert jax.local_device_count() == 2
  _, state = _setup(sgd=True)
  batch = _batch(4)
  rng = jax.random.PRNGKey(flip_seed)
  single, m1 = _compiled(sgd=True)(state, batch, rng)
  multi, m2 = _compiled(sgd=True, pmapped=True)(flax.jax_utils.replicate(state),
                                                _split_batch(batch, 2), rng)
  for a, b in zip(_leaves(single.params), _leaves(multi.params)):
    np.testing.assert_allclose(b[0], b[1], rtol=0, atol=0)   # replicas identical
    np.testing.assert_allclose(b[0], a, rtol=0, atol=1e-5)
  np.testing.assert_allclose(m2['loss'][0], m1['loss'], rtol=1e-5)
  assert float(m1['flip']) == float(m2['flip'][0])
  # The update did something.
  assert max(float(np.abs(a - b).max()) for a, b in zip(_leaves(single.params), _leaves(state.params))) > 1e-4


def test_batchnorm_statistics_are_averaged_across_devices():
  _, state = _setup('bn', sgd=True)
  batch = _batch(4, seed=1)
  multi, _ = _compiled('bn', sgd=True, pmapped=True)(flax.jax_utils.replicate(state),
                                                     _split_batch(batch, 2), jax.random.PRNGKey(0))
  stats = jax.device_get(multi.batch_stats['depth_net']['bn'])
  for leaf in jax.tree_util.tree_leaves(stats):
    np.testing.assert_array_equal(leaf[0], leaf[1])
  # Running mean = pmean of each device's update = 0.9·init + 0.1·mean of the two local means.
  single = _compiled('bn', sgd=True)
  local_means = []
  for half in (slice(0, 2), slice(2, 4)):
    out, _ = single(state, {k: v[half] for k, v in batch.items()}, jax.random.PRNGKey(0))
    local_means.append(np.asarray(out.batch_stats['depth_net']['bn']['mean']))
  np.testing.assert_allclose(stats['mean'][0], np.mean(local_means, axis=0), atol=1e-6)


def test_nonfinite_step_is_skipped_and_counted():
  _, state = _setup()
  step = _compiled(inject=(0, 1))
  batch = _batch(2)
  s1, m1 = step(state, batch, jax.random.PRNGKey(0))
  assert not np.isfinite(float(m1['loss']))
  for a, b in zip(_leaves(s1.params), _leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(s1.opt_state), _leaves(state.opt_state)):
    np.testing.assert_array_equal(a, b)
  assert (int(s1.step), int(s1.skipped_steps), int(s1.bad_streak)) == (1, 1, 1)
  s2, _ = step(s1, batch, jax.random.PRNGKey(1))
  assert (int(s2.step), int(s2.skipped_steps), int(s2.bad_streak)) == (2, 2, 2)
  s3, m3 = step(s2, batch, jax.random.PRNGKey(2))   # step 2 is clean again
  assert np.isfinite(float(m3['loss']))
  assert (int(s3.step), int(s3.skipped_steps), int(s3.bad_streak)) == (3, 2, 0)
  assert all(np.isfinite(x).all() for x in _leaves(s3.params))
  assert any(not np.array_equal(a, b) for a, b in zip(_leaves(s3.params), _leaves(state.params)))


def test_nan_in_batch_never_reaches_params():
  _, state = _setup()
  batch = _batch(2)
  batch['rgb'][0, 3, 3, 0] = np.nan
  state = state.replace(step=jnp.asarray(5, jnp.int32))  # past the injected steps
  s1, m1 = _compiled(inject=(0, 1))(state, batch, jax.random.PRNGKey(0))
  assert float(m1['grads_finite']) == 0.0 or not np.isfinite(float(m1['loss']))
  for a, b in zip(_leaves(s1.params), _leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  assert int(s1.skipped_steps) == 1


def test_step_lr_schedule_is_per_epoch():
  sched = optim.step_lr_schedule(2e-4, step_size_epochs=30, gamma=0.5, steps_per_epoch=100)
  assert float(sched(0)) == pytest.approx(2e-4)
  assert float(sched(30 * 100 - 1)) == pytest.approx(2e-4)
  assert float(sched(30 * 100)) == pytest.approx(1e-4)
  assert float(sched(65 * 100)) == pytest.approx(5e-5)


def test_optimizer_uses_per_network_lr_and_torch_adam():
  params = {'depth_net': {'w': jnp.ones(3)}, 'pose_net': {'w': jnp.ones(2)}}
  grads = {'depth_net': {'w': jnp.asarray([1., -2., 3.])}, 'pose_net': {'w': jnp.asarray([0.5, 0.5])}}
  tx, _ = optim.create_optimizer(depth_lr=1e-3, pose_lr=1e-2, pose_weight_decay=0.1, steps_per_epoch=1)
  updates, _ = tx.update(grads, tx.init(params), params)
  # First Adam step moves each weight by lr·sign(g) (bias-corrected m/√v = ±1, eps negligible).
  np.testing.assert_allclose(updates['depth_net']['w'], [-1e-3, 1e-3, -1e-3], rtol=1e-5)
  # torch Adam's L2 weight decay is added to the gradient first: g + 0.1·w = 0.6 > 0.
  np.testing.assert_allclose(updates['pose_net']['w'], [-1e-2, -1e-2], rtol=1e-5)


def test_grad_clipping():
  params = {'depth_net': {'w': jnp.zeros(2)}, 'pose_net': {'w': jnp.zeros(1)}}
  grads = {'depth_net': {'w': jnp.asarray([3., 4.])}, 'pose_net': {'w': jnp.asarray([0.])}}
  tx, _ = optim.create_optimizer(depth_lr=1.0, pose_lr=1.0, steps_per_epoch=1, grad_clip_norm=1.0)
  state = tx.init(params)
  clipped = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())[0]
  np.testing.assert_allclose(optax.global_norm(clipped), 1.0, rtol=1e-6)
  updates, _ = tx.update(grads, state, params)
  assert np.all(np.isfinite(updates['depth_net']['w']))


def test_replicate_then_unreplicate_round_trips_without_compiling():
  """layout.put / layout.host on 2 devices: every leaf comes back as the host value, read from the first
  shard (no per-leaf gather program: those cost seconds per checkpoint of a real model)."""
  tree = {'w': np.arange(12, dtype=np.float32).reshape(3, 4), 'step': np.int32(7), 'b': [np.ones(5, np.int8)]}
  layout = device_layout.DeviceLayout(replicated=True)
  on_device = layout.put(tree)
  assert jax.tree_util.tree_leaves(on_device)[0].shape[0] == jax.local_device_count() == 2
  with jax.log_compiles():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger('jax').addHandler(handler)
    try:
      back = layout.host(on_device)
    finally:
      logging.getLogger('jax').removeHandler(handler)
  assert not [r for r in records if 'Compiling' in r.getMessage()], [r.getMessage() for r in records]
  for got, want in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(tree)):
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
