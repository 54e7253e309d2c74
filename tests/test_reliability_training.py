"""Training reliability: kill and resume, non-finite steps, determinism.

Every run is the real command line (`packnet_jax.main --config=configs/demo.py`)
in a subprocess, shrunk to a fraction of a second per step: the vendored
kitti_synth tree (4 training samples), 32×96 images, one sample per device on the
2 fake CPU devices, no validation, no images, and lib.tiny_training's
TinyDepthNet with its BatchNorm (version 'bn') as the depth net next to the real
PoseNet: what is tested is the loop and its checkpoints, and the tiny net compiles
in a fraction of DepthResNet18's time. Every run makes the loss NaN at steps 1-3
(main is started by the test-only runner lib/main_with_nonfinite.py, as `python
-m packnet_jax.main` starts it, with the train step wrapped by
lib/nonfinite.py), so all of them run one and the same compiled step, which the
session's persistent XLA compilation cache (conftest.py) lets only the first run
compile, and compiles without XLA's expensive CPU optimisations
(lib.env.FAST_COMPILE_FLAGS). (A resumed run still goes through the same code
path as a fresh one: restore, then the first step; a first-step executable that
differed from the later steps' would still show up as a different final state.)

* Kill and resume: a run is SIGKILLed while it writes a checkpoint (the moment
  orbax's temporary checkpoint folder appears), restarted, SIGKILLed again at a
  random step, and restarted once more. Each restart must resume from the
  newest *complete* checkpoint, and the final TrainState (params, BatchNorm
  statistics, Adam state, skipped-step count, step, RNG) must equal, bit for
  bit, that of a run that was never interrupted; so must every logged loss.
* Non-finite values: the updates of the NaN steps are skipped and counted, no
  checkpoint ever holds a non-finite value, and after
  `train.max_consecutive_nonfinite` bad steps in a row (3 here; the other runs
  keep the default 10 and train on) the run stops with a one-line error naming
  the step and the non-finite terms (slow: the in-process test_train_loop.py
  checks the same in CI).
* Determinism: the same config and seed give the same losses (and the same
  final parameters) in two separate processes.
"""
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lib.env import with_fast_compile

REPO = pathlib.Path(__file__).resolve().parents[1]
KITTI_SYNTH = pathlib.Path(__file__).parent / 'fixtures' / 'reference' / 'kitti_synth'
STEPS = 12
EVERY = 3
NONFINITE_STEPS = (1, 2, 3)   # the steps (0-based state.step) whose loss every run makes NaN
RUN_TIMEOUT_S = 600
# `python -m packnet_jax.main` with NONFINITE_STEPS NaN (every run).
NONFINITE_MAIN = (sys.executable, str(REPO / 'tests' / 'lib' / 'main_with_nonfinite.py'),
                  '--nonfinite_steps=' + ','.join(map(str, NONFINITE_STEPS)))
_LOGGED_STEP = re.compile(r'\[(\d+)\] .*train/loss=')
_RESUMED = re.compile(r'resumed from .* at step (\d+)')


def tiny_args(workdir, *overrides):
  return ['--config=configs/demo.py', f'--workdir={workdir}',
          '--config.model.depth_net.name=TinyDepthNet', '--config.model.depth_net.version=bn',
          f'--config.datasets.train.path={KITTI_SYNTH}', '--config.datasets.train.split=split.txt',
          '--config.datasets.validation.path=', '--config.datasets.augmentation.image_shape=(32, 96)',
          '--config.datasets.augmentation.jittering=()',  # the demo's jitter is not what is tested here
          '--config.datasets.train.batch_size=1', f'--config.arch.max_steps={STEPS}',
          f'--config.checkpoint.every_steps={EVERY}', '--config.checkpoint.every_epochs=0',
          '--config.checkpoint.keep=2', '--config.logging.image_every_steps=0',
          '--config.logging.log_every_steps=1', *overrides]


@pytest.fixture(scope='module')
def env():
  """The test process's environment (2 fake devices, the session's compilation cache)."""
  assert os.environ.get('JAX_COMPILATION_CACHE_DIR'), 'conftest.py sets the shared compilation cache'
  return with_fast_compile(dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3'))


def start(env, workdir, log, *overrides):
  """Starts a training run; stdout+stderr go to `log`."""
  out = open(log, 'ab')  # pylint: disable=consider-using-with
  proc = subprocess.Popen([*NONFINITE_MAIN, *tiny_args(workdir, *overrides)],
                          cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
  out.close()
  return proc


def run(env, workdir, log, *overrides):
  proc = start(env, workdir, log, *overrides)
  try:
    rc = proc.wait(timeout=RUN_TIMEOUT_S)
  finally:
    proc.kill()
  return rc, pathlib.Path(log).read_text(errors='replace')


def kill_when(proc, condition, what, timeout=RUN_TIMEOUT_S, poll_s=0.001):
  """SIGKILLs `proc` as soon as condition() holds (polled every `poll_s`)."""
  deadline = time.monotonic() + timeout
  while not condition():
    assert proc.poll() is None, f'run ended (rc {proc.returncode}) before {what}'
    assert time.monotonic() < deadline, f'timed out waiting for {what}'
    time.sleep(poll_s)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def checkpoint_entries(workdir):
  folder = pathlib.Path(workdir) / 'checkpoints'
  return sorted(os.listdir(folder)) if folder.is_dir() else []


def complete_steps(workdir):
  """Steps of finished orbax checkpoints (temporary folders are not numbers)."""
  return sorted(int(name) for name in checkpoint_entries(workdir) if name.isdigit())


def temporary_checkpoints(workdir):
  return [name for name in checkpoint_entries(workdir) if 'tmp' in name]


def load_state(workdir, step):
  """The checkpointed TrainState pytree (nested dict of numpy arrays)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(workdir) / 'checkpoints' / str(step) / 'state'
  return ocp.PyTreeCheckpointer().restore(str(path))


def leaves(tree, prefix=''):
  """{path: numpy array} of a nested dict / list pytree."""
  if isinstance(tree, dict):
    items = tree.items()
  elif isinstance(tree, (list, tuple)):
    items = enumerate(tree)
  else:
    return {prefix: np.asarray(tree)}
  out = {}
  for key, value in items:
    out.update(leaves(value, f'{prefix}/{key}'))
  return out


def assert_trees_equal(a, b, what):
  la, lb = leaves(a), leaves(b)
  assert sorted(la) == sorted(lb), what
  different = [k for k in la if la[k].shape != lb[k].shape or not np.array_equal(la[k], lb[k])]
  assert not different, f'{what}: {len(different)} arrays differ, e.g. {different[:5]}'


def losses_from_events(workdir):
  """{step: train/loss} from the run's TensorBoard event files (exact float32 values)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  losses = {}
  for path in sorted(pathlib.Path(workdir).glob('events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag == 'train/loss':
          losses[event.step] = float(tf.make_ndarray(value.tensor)) if value.HasField('tensor') \
              else float(value.simple_value)
  return losses


def assert_same_losses(ref_dir, workdir, what):
  """Both runs logged all STEPS losses, NaN exactly at the injected steps, and the same values."""
  first, second = losses_from_events(ref_dir), losses_from_events(workdir)
  steps = list(range(1, STEPS + 1))   # logged after the step: state.step s is logged as s + 1
  assert [s for s in steps if s in first] == steps and [s for s in steps if s in second] == steps, what
  a, b = np.array([first[s] for s in steps]), np.array([second[s] for s in steps])
  assert [s - 1 for s in steps if not np.isfinite(a[s - 1])] == list(NONFINITE_STEPS), (a, what)
  finite = a[np.isfinite(a)]
  assert len(set(finite.tolist())) > 1, a
  np.testing.assert_array_equal(a, b, err_msg=what)   # NaN at the same places, the rest bit for bit


@pytest.fixture(scope='module')
def reference_run(env, tmp_path_factory):
  """An uninterrupted run: (workdir, log text). It checkpoints only at the end (what the tests compare);
  saving does not change the training, which the kill/resume test's comparison checks too."""
  workdir = tmp_path_factory.mktemp('reference') / 'work'
  rc, log = run(env, workdir, workdir.parent / 'log.txt', '--config.checkpoint.every_steps=0')
  assert rc == 0, log[-3000:]
  assert complete_steps(workdir)[-1] == STEPS
  assert int(load_state(workdir, STEPS)['skipped_steps']) == len(NONFINITE_STEPS)
  return workdir, log


# --------------------------------------------------------------------------- determinism
@pytest.mark.slow  # CI: the kill/resume test below compares the losses of separate processes too
def test_same_config_and_seed_give_same_losses(env, reference_run, tmp_path):
  ref_dir, _ = reference_run
  rc, log = run(env, tmp_path / 'work', tmp_path / 'log.txt')
  assert rc == 0, log[-3000:]
  assert_same_losses(ref_dir, tmp_path / 'work', 'second run')
  assert_trees_equal(load_state(ref_dir, STEPS), load_state(tmp_path / 'work', STEPS), 'final state')


# --------------------------------------------------------------------------- kill and resume
def test_sigkill_during_checkpoint_write_and_at_random_step_then_resume(env, reference_run, tmp_path):
  ref_dir, _ = reference_run
  workdir, log = tmp_path / 'work', tmp_path / 'log.txt'
  rng = random.Random(int(time.time()))
  seed_note = f'(random seed of this test run: {rng.random()})'

  # 1. Killed while orbax writes the checkpoint of step `first_kill`.
  first_kill = rng.choice([2 * EVERY, 3 * EVERY])  # So a complete checkpoint exists.
  proc = start(env, workdir, log)
  kill_when(proc, lambda: any(name.startswith(f'{first_kill}.') and 'tmp' in name
                              for name in checkpoint_entries(workdir)),
            f'the checkpoint write of step {first_kill}')
  assert temporary_checkpoints(workdir), f'the kill did not land mid-write {seed_note}'
  assert first_kill not in complete_steps(workdir), seed_note
  resume_from = max(complete_steps(workdir), default=0)
  assert resume_from == first_kill - EVERY, (complete_steps(workdir), seed_note)

  # 2. Restarted: resumes from the last complete checkpoint; killed at a random logged step.
  kill_step = rng.randint(resume_from + 2, STEPS - 2)
  offset = len(log.read_text(errors='replace'))
  proc = start(env, workdir, log)

  def logged(step):
    text = log.read_text(errors='replace')[offset:]
    return any(int(s) >= step for s in _LOGGED_STEP.findall(text))

  # Any moment will do here (a step is ~0.3 s): polling the log every 20 ms, not every millisecond,
  # leaves the 2-core CI machine's CPU to the runs.
  kill_when(proc, lambda: logged(kill_step), f'step {kill_step}', poll_s=0.02)
  text = log.read_text(errors='replace')[offset:]
  resumed = _RESUMED.findall(text)
  assert resumed == ([str(resume_from)] if resume_from else []), (resumed, seed_note)
  assert 'Traceback' not in text, text[-3000:]
  resume_from = max(complete_steps(workdir), default=0)

  # 3. Restarted again: runs to the end from the newest complete checkpoint.
  offset = len(log.read_text(errors='replace'))
  rc, text = run(env, workdir, log)
  text = text[offset:]
  assert rc == 0, text[-3000:]
  assert _RESUMED.findall(text) == ([str(resume_from)] if resume_from else []), (text[-3000:], seed_note)
  first_logged = min(int(s) for s in _LOGGED_STEP.findall(text))
  assert first_logged == resume_from + 1, seed_note  # No step was repeated or skipped.
  assert complete_steps(workdir)[-1] == STEPS
  assert_trees_equal(load_state(ref_dir, STEPS), load_state(workdir, STEPS),
                     f'final TrainState after kills vs uninterrupted run {seed_note}')
  # Determinism across processes: the three processes of this run logged the same losses as the
  # uninterrupted one (a step re-run after a kill logs the same value again).
  assert_same_losses(ref_dir, workdir, f'killed and resumed run {seed_note}')


# --------------------------------------------------------------------------- non-finite steps
# Suite time: test_train_loop.py checks the same in-process (stop message, a checkpoint per step, none
# non-finite, skipped updates change nothing, the CLI's one-line error); test_cli_one_device_end_to_end's resumed
# run skips a NaN step through the CLI on one device.
@pytest.mark.slow
def test_nonfinite_steps_are_skipped_counted_and_stop_the_run(env, tmp_path):
  workdir = tmp_path / 'work'
  assert NONFINITE_STEPS == (1, 2, 3)   # every run has them (NONFINITE_MAIN); this one stops after 3
  rc, log = run(env, workdir, tmp_path / 'log.txt',
                '--config.train.max_consecutive_nonfinite=3', '--config.checkpoint.every_steps=1',
                '--config.checkpoint.keep=3', '--config.checkpoint.async_save=false')
  assert rc != 0, log[-3000:]
  assert 'Traceback' not in log, log[-3000:]
  # The stop message names the step and the non-finite terms.
  stop = [line for line in log.splitlines() if 'consecutive non-finite' in line]
  assert stop and 'step 3' in stop[-1] and 'loss' in stop[-1], log[-3000:]
  for step in (1, 2):  # The earlier bad steps were reported and skipped.
    assert re.search(rf'step {step}: non-finite .*loss.*skipped', log), log[-3000:]
  # Checkpoints after steps 1 (good), 2 and 3 (skipped); step 4 never saved.
  assert complete_steps(workdir) == [1, 2, 3], checkpoint_entries(workdir)
  states = {s: load_state(workdir, s) for s in (1, 2, 3)}
  for step, state in states.items():
    bad = [k for k, v in leaves(state).items() if v.dtype.kind == 'f' and not np.all(np.isfinite(v))]
    assert not bad, f'checkpoint {step} holds non-finite values: {bad[:5]}'
  assert [int(states[s]['skipped_steps']) for s in (1, 2, 3)] == [0, 1, 2]
  assert [int(states[s]['step']) for s in (1, 2, 3)] == [1, 2, 3]
  for key in ('params', 'opt_state', 'batch_stats'):  # Skipped updates changed nothing.
    assert_trees_equal(states[1][key], states[3][key], f'{key} across skipped steps')


# --------------------------------------------------------------------------- long run (slow)
@pytest.mark.slow
def test_soak_host_memory_does_not_grow(tmp_path):
  """tools/soak.py: a few thousand demo steps, host RSS slope after warm-up within the bound."""
  import soak  # pylint: disable=import-outside-toplevel  (tools/, on the tests' import path)
  args = soak.parse_args(['soak', '--steps', '2000', '--tiny', '--workdir', str(tmp_path / 'work'),
                          '--data', str(tmp_path / 'kitti_synth'), '--max_growth_kib_per_step', '32'])
  summary = soak.soak(args)
  assert summary['returncode'] == 0, summary
  assert summary['last_step'] == 2000 and summary['samples'] >= 1900, summary
  assert summary['growth_kib_per_step'] <= 32.0, summary
