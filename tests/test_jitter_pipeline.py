"""Colour jitter end to end: the host ships originals + parameters, the train step jitters them.

The oracle is the old host path: the same seeded draws, applied by PIL to the
same un-jittered images (tests/lib/pil_jitter.py). The device result must equal it
bit for bit, for the target and every context, on one device (jit) and in a
2-device pmapped batch, and the train step must see exactly those images.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lib import pil_jitter
from lib import tiny_training
from lib.fixtures import FIXTURES
import packnet_jax.data as data
from packnet_jax.data import jitter
from packnet_jax.losses import objective
from packnet_jax.models import sfm_model
from packnet_jax.train import train_step as ts
from packnet_jax.train.train_state import TrainState

RAW = {'dataset': 'KITTI', 'path': str(FIXTURES / 'kitti_synth'), 'split': 'split.txt', 'depth_type': 'velodyne',
       'back_context': 1, 'forward_context': 1, 'image_shape': (32, 96), 'jittering': (0.2, 0.2, 0.2, 0.05)}
WITH_GAINS = (0.4, 0.3, 0.5, 0.1, 0.3)  # 5th value: per-channel gains


def _oracle(source, index, epoch):
  """(rgb, rgb_context) as the host jittered them before: PIL on the originals, float32 x/255."""
  sample = source(index, epoch, uint8_images=True)
  rng = np.random.default_rng([source.seed, epoch, index])
  params = jitter.sample_jitter_params(source.jittering, rng)
  frames = np.concatenate([sample['rgb_original'][None], sample['rgb_context_original']])
  out = pil_jitter.pil_jitter_array(frames, *params).astype(np.float32) / np.float32(255)
  return out[0], out[1:]


def _device_jitter(sample):
  """apply_colour_jitter on a one-sample [1, ...] batch of the float sample."""
  batch = {k: jnp.asarray(v)[None] for k, v in ts.model_inputs(sample).items()}
  out = jax.jit(ts.apply_colour_jitter)(batch)
  return np.asarray(out['rgb'][0]), np.asarray(out['rgb_context'][0])


@pytest.mark.parametrize('jittering', [RAW['jittering'], WITH_GAINS])
def test_seeded_train_sample_jittered_on_device_equals_host_pil(jittering):
  source = data.build_source(dict(RAW, jittering=jittering), 'train', seed=3)
  for index, epoch in ((0, 0), (2, 5), (3, 1)):
    sample = source(index, epoch)
    assert 'rgb' not in sample and 'rgb_context' not in sample  # only the originals leave the host
    assert sample['jitter_order'].dtype == np.int32 and sample['jitter_factors'].dtype == np.float32
    rgb, ctx = _device_jitter(sample)
    expected_rgb, expected_ctx = _oracle(source, index, epoch)
    np.testing.assert_array_equal(rgb, expected_rgb)
    np.testing.assert_array_equal(ctx, expected_ctx)
    assert ctx.shape == (2, 32, 96, 3) and not np.array_equal(rgb, sample['rgb_original'])
  if len(jittering) > 4:
    assert not np.all(sample['jitter_gains'] == 1)


def test_without_jittering_the_host_sample_is_as_before():
  source = data.build_source(dict(RAW, jittering=()), 'train', seed=3)
  sample = source(1, 0)
  assert not set(jitter.PARAM_KEYS) & set(sample)
  np.testing.assert_array_equal(sample['rgb'], sample['rgb_original'])
  batch = {k: jnp.asarray(v)[None] for k, v in ts.model_inputs(sample).items()}
  assert ts.apply_colour_jitter(batch) is batch


def test_pmapped_batch_equals_host_pil():
  assert jax.local_device_count() == 2
  source = data.build_source(RAW, 'train', seed=4)
  it = data.make_train_iterator(RAW, batch_size=2, num_devices=2, seed=4, process_index=0, process_count=1,
                                source=source)
  host = next(it)
  assert 'rgb' not in host and host['jitter_order'].shape == (2, 2, 4)
  inputs = ts.model_inputs(host)
  assert inputs['jitter_order'].dtype == np.int32 and inputs['jitter_hue_shift'].dtype == np.int32
  out = jax.pmap(ts.apply_colour_jitter)(inputs)
  for d in range(2):
    for b in range(2):
      rgb, ctx = _oracle(source, int(host['idx'][d, b]), 0)
      np.testing.assert_array_equal(np.asarray(out['rgb'][d, b]), rgb)
      np.testing.assert_array_equal(np.asarray(out['rgb_context'][d, b]), ctx)
      np.testing.assert_array_equal(np.asarray(out['rgb_original'][d, b]), host['rgb_original'][d, b])


class _TinyPoseNet(nn.Module):

  @nn.compact
  def __call__(self, target, contexts, train=False):
    n = contexts.shape[1]
    x = jnp.concatenate([target] + [contexts[:, j] for j in range(n)], axis=-1)
    x = nn.Conv(6 * n, (3, 3), strides=(4, 4), name='pose_pred')(x)
    return 0.01 * jnp.mean(x, axis=(1, 2)).reshape(-1, n, 6)


def test_train_step_trains_on_the_device_jittered_images():
  """A step on originals + parameters = the same step on the host-jittered images (loss and update)."""
  source = data.build_source(RAW, 'train', seed=5)
  samples = [source(i, 0) for i in (0, 1)]
  host = {k: np.stack([s[k] for s in samples]) for k in samples[0] if k not in ('idx', 'filename')}
  jittered = ts.model_inputs(host)
  oracle = [_oracle(source, i, 0) for i in (0, 1)]
  plain = {k: v for k, v in jittered.items() if k not in jitter.PARAM_KEYS}
  plain['rgb'] = np.stack([o[0] for o in oracle])
  plain['rgb_context'] = np.stack([o[1] for o in oracle])
  model = sfm_model.SfmModel(depth_net=tiny_training.TinyDepthNet(), pose_net=_TinyPoseNet())
  variables = sfm_model.init_variables(model, jax.random.PRNGKey(0), (32, 96))
  state = TrainState.create(params=variables['params'], batch_stats={}, tx=optax.sgd(0.1), rng=jax.random.PRNGKey(1))
  step = jax.jit(ts.make_train_step(model, objective.LossOptions(num_scales=1), flip_lr_prob=0.0))
  rng = jax.random.PRNGKey(2)
  new_a, metrics_a = tiny_training.fast_compiling(step)(state, jittered, rng)
  new_b, metrics_b = tiny_training.fast_compiling(step)(state, plain, rng)
  assert float(metrics_a['loss']) == float(metrics_b['loss']) and np.isfinite(float(metrics_a['loss']))
  for a, b in zip(jax.tree_util.tree_leaves(new_a.params), jax.tree_util.tree_leaves(new_b.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
