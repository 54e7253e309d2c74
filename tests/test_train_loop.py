"""train_and_evaluate end to end on the vendored kitti_synth tree (tiny net, 2 fake CPU devices).

* resume: N steps, stop, resume to 2N == uninterrupted 2N, bit for bit;
* semi-supervised and velocity-supervised configs: finite losses, every loss
  term logged, non-zero gradients in both networks;
* K consecutive non-finite steps stop the run with the step and the terms, and
  nothing non-finite reaches a checkpoint; fewer are skipped and training goes on.
"""
import tempfile

import jax
import numpy as np
import pytest

from lib import nonfinite
from lib import tiny_training
from packnet_jax.workdir import checkpoints as checkpointing
from packnet_jax.train import train


@pytest.fixture(scope='module', autouse=True)
def compilation_cache():
  """Each train_and_evaluate builds its step anew; identical programs are then
  compiled once per module through JAX's persistent cache."""
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
  with tempfile.TemporaryDirectory() as cache_dir:
    jax.config.update('jax_compilation_cache_dir', cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    compilation_cache.reset_cache()
    yield
    jax.config.update('jax_compilation_cache_dir', old[0])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])
    compilation_cache.reset_cache()   # later tests must not write into the deleted folder


@pytest.fixture(autouse=True)
def fast_compile(monkeypatch):
  """The loop's step compiles with the cheap XLA options (lib.env): the loop is what is checked."""
  tiny_training.compile_loop_steps_fast(monkeypatch)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


# Suite time: in-process repeat of what the cross-process kill/resume test (2 devices,
# test_reliability_training) and the single-device resume (test_cli_one_device_end_to_end) check.
@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path):
  # Uninterrupted: 4 steps (global batch 2 on 2 devices → 2 steps per epoch).
  full = train.train_and_evaluate(tiny_training.tiny_config(max_steps=4), tmp_path / 'full')
  # Interrupted after 2 steps, then the same command with the longer schedule resumes.
  train.train_and_evaluate(tiny_training.tiny_config(max_steps=2), tmp_path / 'split')
  resumed = train.train_and_evaluate(tiny_training.tiny_config(max_steps=4), tmp_path / 'split')
  assert len(resumed.history) == 2   # only steps 2 and 3 were run again
  assert int(resumed.state.step) == int(full.state.step) == 4
  for a, b in zip(_leaves(full.state.params), _leaves(resumed.state.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(full.state.opt_state), _leaves(resumed.state.opt_state)):
    np.testing.assert_array_equal(a, b)
  assert [h['loss'] for h in full.history[2:]] == [h['loss'] for h in resumed.history]
  # Repeatability from scratch (a fresh process, same command) is checked by the kill/resume test
  # in test_reliability_training.py, which compares every step's loss with an uninterrupted run.
  manager = checkpointing.create_manager(tmp_path / 'split', keep=5)
  assert manager.latest_step() == 4


# VelSup is SelfSup plus the velocity term (test_velocity_loss.py checks its values and gradients against
# the reference, test_every_config_trains traces kitti_velsup's step on a synthetic batch): its real training is slow.
@pytest.mark.parametrize('model,term', [('SemiSupModel', 'supervised_loss'),
                                        pytest.param('VelSupModel', 'velocity_loss', marks=pytest.mark.slow)])
def test_semisup_and_velsup_train(tmp_path, model, term, monkeypatch):
  grads = {}
  make = train.train_step_lib.make_train_step

  def spy(*args, **kwargs):
    """Wraps the step to also report each network's gradient norm."""
    step = make(*args, **kwargs)

    def wrapped(state, batch, rng):
      new_state, metrics = step(state, batch, rng)
      for net in ('depth_net', 'pose_net'):
        delta = jax.tree_util.tree_map(lambda a, b: a - b, new_state.params[net], state.params[net])
        metrics[f'update_norm_{net}'] = sum(
            (x ** 2).sum() for x in jax.tree_util.tree_leaves(delta)) ** 0.5
      return new_state, metrics
    return wrapped

  monkeypatch.setattr(train.train_step_lib, 'make_train_step', spy)
  config = tiny_training.tiny_config(model, max_steps=2)
  result = train.train_and_evaluate(config, tmp_path)
  for metrics in result.history:
    for key in ('loss', 'photometric_loss', 'smoothness_loss', term):
      assert key in metrics and np.isfinite(metrics[key]) and metrics[key] > 0, (key, metrics)
    assert metrics['grads_finite'] == 1.0
    # Adam moves every network with a non-zero gradient.
    assert metrics['update_norm_depth_net'] > 0 and metrics['update_norm_pose_net'] > 0
    # A learning run is not reported as collapsed (tests/test_collapse_report.py has the collapsing one).
    assert metrics['inv_depth_spread'] > 1e-2 and metrics['grad_norm_depth'] > 1e-5, metrics
    grads.setdefault('n', 0)
  assert result.collapsed_at is None
  # Each term went to the metric writer (TensorBoard event file in the workdir).
  assert list(tmp_path.glob('events.out.tfevents.*'))


# Both non-finite tests make the same steps NaN (lib/nonfinite.py): one compiled step (through the cache).
NONFINITE_STEPS = (2, 3)


def test_nonfinite_steps_stop_the_run(monkeypatch, tmp_path):
  """Steps 2 and 3 are NaN, the limit is 2: the run stops at step 3 with the step and the terms; every
  step was checkpointed, none holds a non-finite value, and the skipped updates changed nothing."""
  config = tiny_training.tiny_config(max_steps=6)
  nonfinite.install(monkeypatch, NONFINITE_STEPS)
  config.train.max_consecutive_nonfinite = 2
  config.checkpoint.every_steps = 1
  with pytest.raises(train.NonFiniteLossError, match=r'^step 3: stopping after 2 consecutive .*non-finite: '
                                                     r'loss.*last good checkpoint: step 3'):
    train.train_and_evaluate(config, tmp_path)
  manager = checkpointing.create_manager(tmp_path, keep=5)
  assert manager.all_steps() == [1, 2, 3]   # after steps 0, 1 (good) and 2 (skipped); never after step 3
  fresh = train.create_train_state(config, train.model_init.build_model(config), 2)[0]
  states = {step: checkpointing.restore(manager, fresh, step)[0] for step in (1, 2, 3)}
  for step, state in states.items():
    assert all(np.isfinite(x).all() for x in _leaves(state)), f'checkpoint {step} holds non-finite values'
  assert [(int(s.step), int(s.skipped_steps), int(s.bad_streak)) for s in states.values()] == [
      (1, 0, 0), (2, 0, 0), (3, 1, 1)]
  for part in ('params', 'opt_state', 'batch_stats'):   # the skipped update left the state as it was
    for a, b in zip(_leaves(getattr(states[2], part)), _leaves(getattr(states[3], part))):
      np.testing.assert_array_equal(a, b, err_msg=part)
  assert not np.array_equal(_leaves(states[1].params)[0], _leaves(states[2].params)[0])   # a good step moved


def test_main_reports_a_nonfinite_stop_in_one_line(monkeypatch, tmp_path):
  """The CLI turns the stop into `error: <message>` (exit status 1), no traceback."""
  from absl import flags   # pylint: disable=import-outside-toplevel
  from packnet_jax import main   # pylint: disable=import-outside-toplevel
  message = 'step 3: stopping after 2 consecutive steps with non-finite: loss; last good checkpoint: step 3'

  def stop(config, workdir):
    del config, workdir
    raise train.NonFiniteLossError(message)

  monkeypatch.setattr(train, 'train_and_evaluate', stop)
  flags.FLAGS(['main', '--config=configs/demo.py', f'--workdir={tmp_path}'])
  try:
    with pytest.raises(SystemExit) as exit_info:
      main.main(['main'])
  finally:
    flags.FLAGS.unparse_flags()
  assert str(exit_info.value.code) == f'error: {message}'


def test_nonfinite_steps_below_the_limit_are_skipped(monkeypatch, tmp_path):
  config = tiny_training.tiny_config(max_steps=6)
  nonfinite.install(monkeypatch, NONFINITE_STEPS)
  config.train.max_consecutive_nonfinite = 3
  result = train.train_and_evaluate(config, tmp_path)
  assert [np.isfinite(h['loss']) for h in result.history] == [True, True, False, False, True, True]
  assert int(result.state.step) == 6
  assert int(result.state.skipped_steps) == 2 and int(result.state.bad_streak) == 0
  assert all(np.isfinite(x).all() for x in _leaves(result.state.params))
