"""tf.data pipeline: pmap-shaped batches, determinism, resume, host sharding, eval mask."""
import jax
import numpy as np
import pytest

from lib.fixtures import FIXTURES
import packnet_jax.data as data
from packnet_jax.data import pipeline
from packnet_jax.train import train_step

CFG = {
    'dataset': ['KITTI'], 'path': [str(FIXTURES / 'kitti_synth')], 'split': ['split.txt'],
    'depth_type': ['velodyne'], 'back_context': 1, 'forward_context': 1, 'image_shape': (30, 96),
    'jittering': (0.2, 0.2, 0.2, 0.05), 'with_pose': True,
}


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_batches_are_pmap_shaped_and_deterministic():
  assert jax.local_device_count() == 2
  it = data.make_train_iterator(CFG, batch_size=1, seed=7, process_index=0, process_count=1)
  assert it.steps_per_epoch == 2
  a = _take(it, 4)
  b = data.make_train_iterator(CFG, batch_size=1, seed=7, process_index=0, process_count=1)
  b = _take(b, 4)
  batch = a[0]
  assert batch['rgb_original'].shape == (2, 1, 30, 96, 3)
  assert batch['rgb_context_original'].shape == (2, 1, 2, 30, 96, 3)
  assert batch['intrinsics'].shape == (2, 1, 3, 3) and batch['pose_context'].shape == (2, 1, 2, 4, 4)
  assert batch['depth'].shape == (2, 1, 30, 96, 1)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  # With jitter the host ships the originals (the un-jittered reference resize) and the jitter
  # parameters; the train step makes rgb from them, and it differs from the originals.
  assert 'rgb' not in batch and 'rgb_context' not in batch
  assert batch['jitter_order'].shape == (2, 1, 4) and batch['jitter_order'].dtype == np.int32
  assert batch['jitter_factors'].shape == (2, 1, 3) and batch['jitter_hue_shift'].shape == (2, 1)
  plain = data.build_source(dict(CFG, jittering=()), 'train')(int(batch['idx'][0, 0]))
  np.testing.assert_array_equal(batch['rgb_original'][0, 0], plain['rgb'])
  jittered = jax.pmap(train_step.apply_colour_jitter)(train_step.model_inputs(batch))
  assert jittered['rgb'].shape == (2, 1, 30, 96, 3) and jittered['rgb_context'].shape == (2, 1, 2, 30, 96, 3)
  assert not np.array_equal(np.asarray(jittered['rgb']), batch['rgb_original'])
  # A different seed gives a different order or jitter.
  c = _take(data.make_train_iterator(CFG, batch_size=1, seed=8, process_index=0, process_count=1), 4)
  assert any(not np.array_equal(x[k], y[k]) for x, y in zip(a, c) for k in ('idx', 'jitter_factors'))


def test_resume_from_step_is_exact():
  full = _take(data.make_train_iterator(CFG, batch_size=1, seed=3, process_index=0, process_count=1), 5)
  resumed = data.make_train_iterator(CFG, batch_size=1, seed=3, start_step=3, process_index=0, process_count=1)
  assert resumed.steps_per_epoch == 2  # start_step 3 is inside epoch 1
  for x, y in zip(full[3:], _take(resumed, 2)):
    np.testing.assert_array_equal(x['idx'], y['idx'])
    np.testing.assert_array_equal(x['rgb_original'], y['rgb_original'])
    np.testing.assert_array_equal(x['jitter_factors'], y['jitter_factors'])


def test_train_shards_are_disjoint_per_epoch():
  for epoch_start in (0, 50):
    streams = [pipeline.train_index_stream(11, per_device_batch=2, num_devices=2, seed=5, shuffle=True,
                                           process_index=p, process_count=2, start_step=epoch_start)
               for p in range(2)]
    per_epoch = pipeline.train_steps_per_epoch(11, 2, 2, 2) * 4
    assert per_epoch == 4
    got = [[next(s) for _ in range(per_epoch)] for s in streams]
    idx = [[i for i, _ in g] for g in got]
    assert len({e for g in got for _, e in g}) == 1  # one epoch
    assert not set(idx[0]) & set(idx[1])
    assert len(set(idx[0]) | set(idx[1])) == 8  # 11 samples → 2 hosts × 4, remainder dropped


@pytest.mark.parametrize('batch_size', [1, 2])
def test_eval_pass_is_exact_with_mask(batch_size):
  cfg = dict(CFG, back_context=0, forward_context=0, with_pose=False)
  seen = []
  for p in range(2):
    for b in data.make_eval_iterator(cfg, 'validation', batch_size=batch_size, process_index=p, process_count=2):
      assert b['rgb'].shape == (2, batch_size, 30, 96, 3)
      assert b['depth'].shape[:2] == (2, batch_size) and b['mask'].shape == (2, batch_size)
      np.testing.assert_array_equal(b['depth_hw'][b['mask']], [[60, 200]] * int(b['mask'].sum()))
      seen += list(b['idx'][b['mask']])
  assert sorted(seen) == list(range(6))  # 6 samples: each exactly once over both hosts


def test_config_errors():
  with pytest.raises(ValueError, match='dataset root not found: /missing/root'):
    data.build_dataset(dict(CFG, path=['/missing/root']), 'train', num_devices=2, process_index=0,
                       process_count=1)
  with pytest.raises(ValueError, match='dataset'):
    data.build_reader(dict(CFG, dataset=['Nope']))
