"""A one-GPU user's whole path, on ONE device: train, then eval / infer / export on the workdir, then resume.

Every command runs as a subprocess without the fake-device flag that the rest of
the suite uses (see conftest.py), so the single-device `jit` path of the README is
what runs here: `main` (with more than one step between metric reads, which is
what crashed when the loop read a donated state), then every tool pointed at the
workdir alone (no --config), then the same `main` command again with more steps.
XLA compiles without its expensive CPU optimisations (lib.env.FAST_COMPILE_FLAGS):
the same commands under the default flags are the README demo that .ci/run runs.
The training program is the one test_bucket_workdir.py and test_multi_dataset.py
train too (the demo config at 32×96, batch 2, one device), so the session's
compilation cache (conftest.py) compiles it once for all three. (The skip-and-count
path of a non-finite step on one device is test_train_step.py's, in process.)
"""
import json
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from lib.synthetic import ONE_DEVICE_DEMO_FRAMES
from lib.synthetic import make_synthetic_kitti
from lib.env import single_device_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (32, 96)


def run(module, *args, timeout=900, cwd=ROOT):
  """`python -m module args` on one device."""
  proc = subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=single_device_env(fast_compile=True),
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, f'{module} {args} failed:\n{proc.stderr[-3000:]}'
  return proc


def train_args(data, workdir, max_steps):
  return [f'--config=configs/demo.py:{data}', f'--workdir={workdir}',
          f'--config.datasets.augmentation.image_shape=({SHAPE[0]},{SHAPE[1]})',
          '--config.datasets.train.batch_size=2', '--config.datasets.validation.batch_size=2',
          f'--config.arch.max_steps={max_steps}', '--config.eval.schedule=steps', '--config.eval.every_steps=2',
          '--config.checkpoint.every_steps=2', '--config.logging.log_every_steps=3',
          '--config.logging.image_every_steps=2',
          # The reference's colour jitter (the demo's default too, spelled out because this test
          # depends on it): jittered batches reach the step as originals + parameters, and the
          # training-image log must cope with that.
          '--config.datasets.augmentation.jittering=(0.2,0.2,0.2,0.05)']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(data root, workdir, main's output) after 4 steps of the demo config on one device."""
  base = tmp_path_factory.mktemp('user')
  data = base / 'kitti_synth'
  make_synthetic_kitti(data, ONE_DEVICE_DEMO_FRAMES, *SHAPE)
  workdir = base / 'workdir'
  proc = run('packnet_jax.main', *train_args(data, workdir, 4))
  return data, workdir, proc.stdout + proc.stderr


def test_main_trains_on_one_device_and_writes_its_config(trained):
  _, workdir, output = trained
  assert 'on 1 device(s)' in output
  assert re.search(r'final evaluation \(step 4\): AbsRel [\d.]+', output)
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit()) == ['2', '4']
  config = json.loads((workdir / 'config.json').read_text())
  assert config['datasets']['augmentation']['image_shape'] == list(SHAPE)
  assert config['datasets']['augmentation']['jittering'] == [0.2, 0.2, 0.2, 0.05]
  assert json.loads((workdir / 'validation.json').read_text())['step'] == 4


def test_eval_on_the_workdir_reproduces_the_last_validation(trained, tmp_path):
  _, workdir, _ = trained
  out = tmp_path / 'metrics.json'
  # Run from another folder: the workdir is all a user points the tools at.
  run('packnet_jax.eval', f'--checkpoint={workdir}', '--split=validation', f'--output={out}', '--noprogress',
      cwd=tmp_path)
  logged = json.loads((workdir / 'validation.json').read_text())
  evaluated = json.loads(out.read_text())
  assert evaluated['checkpoint'].endswith('(step 4)')
  assert evaluated['num_samples'] == logged['num_samples'] > 0
  for row in ('depth', 'depth_gt', 'depth_pp', 'depth_pp_gt', 'median_baseline_gt'):
    for name, value in logged[row].items():
      np.testing.assert_allclose(evaluated[row][name], value, rtol=1e-5, err_msg=f'{row}/{name}')


def test_infer_and_export_on_the_workdir(trained, tmp_path):
  data, workdir, _ = trained
  images = data / '2011_09_26' / '2011_09_26_drive_0001_sync' / 'image_02' / 'data'
  run('packnet_jax.infer', f'--checkpoint={workdir}', f'--input={images}', f'--output={tmp_path / "depth"}',
      '--quiet', cwd=tmp_path)
  npz = sorted((tmp_path / 'depth').glob('*.npz'))
  assert len(npz) == len(list(images.glob('*.png')))
  with np.load(npz[0]) as f:
    assert f['inv_depth'].shape == SHAPE and np.all(f['inv_depth'] > 0)
  exported = tmp_path / 'model.stablehlo'
  run('packnet_jax.export', f'--checkpoint={workdir}', '--step=2', '--format=stablehlo',
      f'--output={exported}', cwd=tmp_path)
  from packnet_jax import api
  from packnet_jax import export
  rgb = np.random.RandomState(0).uniform(size=(1,) + SHAPE + (3,)).astype(np.float32)
  want = api.load_model(str(workdir), step=2).predict_inv_depth(rgb)
  got = export.load_stablehlo(exported.read_bytes()).call(rgb)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_the_same_command_resumes(trained):
  data, workdir, _ = trained
  proc = run('packnet_jax.main', *train_args(data, workdir, 6))
  output = proc.stdout + proc.stderr
  assert re.search(r'resumed from \S+ at step 4', output)
  assert 'steps 4 → 6' in output
  assert 'non-finite' not in output, output[-3000:]
  assert re.search(r'final evaluation \(step 6\)', output)
  assert json.loads((workdir / 'validation.json').read_text())['step'] == 6
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  state = ocp.PyTreeCheckpointer().restore(str(workdir / 'checkpoints' / '6' / 'state'))
  assert (int(state['step']), int(state['skipped_steps']), int(state['bad_streak'])) == (6, 0, 0)
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(state['params']))
