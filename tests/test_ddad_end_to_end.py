"""DDAD end to end on ONE device: synthetic DGP scene → `packnet_jax.main` → `packnet_jax.eval`.

`tools/make_synthetic_ddad.py` writes a two-camera street in the DDAD layout.
The CLIs run in subprocesses whose XLA_FLAGS lack the fake-device flag of
tests/conftest.py, so they see one CPU device; XLA compiles without its
expensive CPU optimisations. The depth net is DepthResNet18 instead of
PackNet01; everything else is the DDAD config.

* In CI: the training stream mixes both cameras (one example per frame and
  camera), and `python -m packnet_jax.eval --config=configs/ddad.py` reports
  per-camera and overall rows (weights: a recipe `.ckpt`).
* Slow (`--runslow`): `python -m packnet_jax.main --config=configs/ddad.py`
  trains on the scene with both cameras, and eval reads its workdir. In CI the
  DDAD train step is traced on a real DDAD batch by
  test_every_config_trains.py::test_config_traces_its_train_step[ddad], and the loop,
  checkpoints and workdir evaluation are the ones test_cli_one_device_end_to_end.py runs
  end to end on KITTI; this run's compile (~1 CPU-minute) is what CI saves.

A dataset whose calibration lacks a requested camera stops `main` with one
`error:` line naming the calibration file and the camera, writing nothing.
"""
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from lib.env import single_device_env
from lib import torch_writer

REPO = pathlib.Path(__file__).resolve().parents[1]
CAMERAS = ('camera_01', 'camera_05')
TRAIN_FRAMES, VAL_FRAMES = 8, 3
MAX_STEPS, BATCH = 2, 2
TIMEOUT_S = 600


def one_device_env():
  """One CPU device, cheap compilation (lib.env), the repository on the path."""
  return dict(single_device_env(fast_compile=True), JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO),
              TF_CPP_MIN_LOG_LEVEL='3', TF_ENABLE_ONEDNN_OPTS='0')


def run_cli(module, *args):
  return subprocess.run([sys.executable, '-m', module, *map(str, args)], cwd=REPO, env=one_device_env(),
                        capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def overrides(dataset_json, cameras=CAMERAS):
  """--config.* flags shared by the train and eval commands."""
  cams = '(' + ','.join(f"'{c}'" for c in cameras) + ')'
  flags = {'model.depth_net.name': 'DepthResNet', 'model.depth_net.version': '18',
           'datasets.augmentation.image_shape': '(64,96)'}
  for split in ('train', 'validation', 'test'):
    flags[f'datasets.{split}.path'] = str(dataset_json)
    flags[f'datasets.{split}.cameras'] = cams
  return [f'--config.{k}={v}' for k, v in flags.items()]


def train_flags(dataset_json, cameras=CAMERAS):
  return overrides(dataset_json, cameras) + [
      f'--config.arch.max_steps={MAX_STEPS}', f'--config.datasets.train.batch_size={BATCH}',
      '--config.datasets.train.repeat=1', '--config.checkpoint.async_save=False',
      '--config.datasets.validation.path=']   # the eval CLI below is the evaluation


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('synthetic_ddad')
  subprocess.run([sys.executable, str(REPO / 'tools' / 'make_synthetic_ddad.py'), '--output', str(root),
                  '--frames', str(TRAIN_FRAMES), '--val_frames', str(VAL_FRAMES)],
                 check=True, capture_output=True, timeout=TIMEOUT_S)
  return root


def assert_per_camera_results(evaluation, out):
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  results = json.loads(out.read_text())
  assert sorted(results['cameras']) == list(CAMERAS)
  assert results['num_samples'] == VAL_FRAMES * len(CAMERAS)
  assert [results['cameras'][c]['num_samples'] for c in CAMERAS] == [VAL_FRAMES] * len(CAMERAS)
  for group in [results] + [results['cameras'][c] for c in CAMERAS]:
    for row in ('depth', 'depth_gt', 'depth_pp', 'depth_pp_gt'):
      assert 0 < group[row]['abs_rel'] < 10 and 0 <= group[row]['a1'] <= 1
  # The printed table has a section per camera.
  for cam in CAMERAS:
    assert f'validation {cam}: {VAL_FRAMES} samples' in evaluation.stdout


def test_training_stream_mixes_both_cameras(dataset):
  """The batches of the first steps hold both cameras: same reader and index stream as `main`."""
  from packnet_jax.data import config as data_config  # pylint: disable=import-outside-toplevel
  from packnet_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  from configs import ddad as ddad_config  # pylint: disable=import-outside-toplevel
  config = ddad_config.get_config()
  # Cameras given in reverse: the data order (and so the batches) follows the dataset, not the flag.
  train_cfg = dict(config.datasets.train.to_dict(), path=str(dataset / 'ddad.json'), cameras=CAMERAS[::-1])
  reader = data_config.build_reader(train_cfg, 'train')
  assert len(reader) == (TRAIN_FRAMES - 2) * 2
  assert [cam for _, _, cam in reader.items[:2]] == list(CAMERAS)
  stream = pipeline.train_index_stream(len(reader), per_device_batch=BATCH, num_devices=1,
                                       seed=config.arch.seed, shuffle=True, process_index=0, process_count=1)
  seen = {reader.items[next(stream)[0]][2] for _ in range(MAX_STEPS * BATCH)}
  assert seen == set(CAMERAS)


def test_per_camera_evaluation(dataset, tmp_path):
  ckpt = torch_writer.recipe_checkpoint(tmp_path / 'depth.ckpt', pose=None, fmt='zip')
  out = tmp_path / 'metrics.json'
  evaluation = run_cli('packnet_jax.eval', '--config=configs/ddad.py', f'--checkpoint={ckpt}',
                       '--split=validation', f'--output_json={out}', '--noprogress',
                       *overrides(dataset / 'ddad.json'))
  assert_per_camera_results(evaluation, out)


@pytest.mark.slow   # CI: the two tests above, and the step traced on DDAD data (see the module docstring)
def test_multi_camera_training_then_per_camera_evaluation(dataset, tmp_path):
  workdir = tmp_path / 'work'
  train = run_cli('packnet_jax.main', '--config=configs/ddad.py', f'--workdir={workdir}',
                  *train_flags(dataset / 'ddad.json', cameras=CAMERAS[::-1]))
  assert train.returncode == 0, train.stderr[-3000:]
  assert 'on 1 device(s)' in train.stderr
  assert (workdir / 'checkpoints' / str(MAX_STEPS)).is_dir()
  out = tmp_path / 'metrics.json'
  evaluation = run_cli('packnet_jax.eval', '--config=configs/ddad.py', f'--checkpoint={workdir}',
                       '--split=validation', f'--output_json={out}', '--noprogress',
                       *overrides(dataset / 'ddad.json'))
  assert_per_camera_results(evaluation, out)


def test_missing_camera_calibration_is_one_error_line(dataset, tmp_path):
  root = tmp_path / 'ddad'
  shutil.copytree(dataset, root)
  calib_file = next((root / '000000' / 'calibration').glob('*.json'))
  calib = json.loads(calib_file.read_text())
  drop = calib['names'].index('CAMERA_05')
  calib = {key: [v for i, v in enumerate(values) if i != drop] for key, values in calib.items()}
  calib_file.write_text(json.dumps(calib))
  workdir = tmp_path / 'work'
  result = run_cli('packnet_jax.main', '--config=configs/ddad.py', f'--workdir={workdir}',
                   *train_flags(root / 'ddad.json'))
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert errors == [f"error: {calib_file}: expected a calibration entry for camera 'camera_05' in names, "
                    "found ['LIDAR', 'CAMERA_01']"], result.stderr[-3000:]
  written = [p for p in workdir.rglob('*') if p.is_file()] if workdir.exists() else []  # may exist, empty
  assert not written
