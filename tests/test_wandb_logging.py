"""W&B logging, offline: the run files hold the scalars TensorBoard got, and a resumed run keeps its id.

`main` runs with `logging.wandb.enabled` and WANDB_MODE=offline (nothing is
sent anywhere); the history is read back from the offline run's `.wandb` file
(a LevelDB-style log of protobuf records, read by `read_wandb_history`) and
compared with the TensorBoard event file of the same run, step by step.
"""
import glob
import json
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from lib.synthetic import make_synthetic_kitti
from lib.env import single_device_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (32, 96)
BLOCK = 32768            # LevelDB log block size used by W&B's transaction log
FILE_HEADER = 7          # ':W&B' + magic (2 bytes) + version (1 byte)
RECORD_HEADER = 7        # crc32 (4) + length (2) + type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_wandb_records(path):
  """The protobuf Records of a `.wandb` file, in order."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=import-outside-toplevel
  data = pathlib.Path(path).read_bytes()
  assert data[:4] == b':W&B', data[:8]
  pos, pending, records = FILE_HEADER, b'', []
  while pos + RECORD_HEADER <= len(data):
    left = BLOCK - pos % BLOCK
    if left < RECORD_HEADER:  # block trailer padding
      pos += left
      continue
    _, length, kind = struct.unpack('<IHB', data[pos:pos + RECORD_HEADER])
    chunk = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
    pos += RECORD_HEADER + length
    if kind == 0 and length == 0:
      break
    pending = chunk if kind in (FULL, FIRST) else pending + chunk
    if kind in (FULL, LAST):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      records.append(record)
  return records


def read_wandb_history(path):
  """{step: {key: value}} of the history records (values as W&B stored them, JSON-decoded)."""
  history = {}
  for record in read_wandb_records(path):
    if record.WhichOneof('record_type') == 'history':
      items = {item.key or '/'.join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
      step = int(items.pop('_step'))
      history.setdefault(step, {}).update(items)
  return history


def read_tensorboard_scalars(workdir):
  """{step: {tag: value}} of every scalar in the workdir's event files."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  scalars = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor) if value.HasField('tensor') else np.asarray(value.simple_value)
        if array.ndim == 0 and array.dtype.kind == 'f':
          scalars.setdefault(int(event.step), {})[value.tag] = float(array)
  return scalars


def train(data, workdir, max_steps, tmp_path):
  env = dict(single_device_env(fast_compile=True), WANDB_MODE='offline', WANDB_SILENT='true',
             WANDB_CONFIG_DIR=str(tmp_path / 'wandb-config'), WANDB_CACHE_DIR=str(tmp_path / 'wandb-cache'))
  args = [f'--config=configs/demo.py:{data}', f'--workdir={workdir}',
          f'--config.datasets.augmentation.image_shape=({SHAPE[0]},{SHAPE[1]})',
          '--config.datasets.train.batch_size=2', f'--config.arch.max_steps={max_steps}',
          '--config.eval.schedule=off', '--config.checkpoint.every_steps=2',
          '--config.logging.log_every_steps=1', '--config.logging.image_every_steps=2',
          '--config.logging.wandb.enabled=True', '--config.logging.wandb.project=packnet-test',
          "--config.logging.wandb.tags=('ci','demo')"]
  proc = subprocess.run([sys.executable, '-m', 'packnet_jax.main', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow  # two training runs; the suite's 10 minutes go to the bucket round trip
def test_offline_wandb_history_equals_tensorboard_and_resume_keeps_the_run(tmp_path):
  pytest.importorskip('wandb', reason='needs wandb (pip install -r requirements-wandb.txt)')
  data = make_synthetic_kitti(tmp_path / 'kitti_synth', 8, *SHAPE)
  workdir = tmp_path / 'workdir'
  train(data, workdir, 2, tmp_path)
  train(data, workdir, 3, tmp_path)  # resumed from step 2: the same W&B run goes on
  run_id = (workdir / 'wandb_run_id.txt').read_text().strip()
  runs = sorted(glob.glob(str(workdir / 'wandb' / 'offline-run-*')))
  assert len(runs) == 2 and all(r.endswith(f'-{run_id}') for r in runs), runs
  history = {}
  for run in runs:
    (path,) = glob.glob(os.path.join(run, f'run-{run_id}.wandb'))
    history.update(read_wandb_history(path))
  tensorboard = read_tensorboard_scalars(str(workdir))
  compared = 0
  for step, values in tensorboard.items():
    for tag, value in values.items():
      if tag.startswith('train/'):
        # TensorBoard stores float32, W&B the float64 the writer was given.
        np.testing.assert_allclose(history[step][tag], value, rtol=1e-6, err_msg=f'{tag} at step {step}')
        compared += 1
  assert sorted(s for s in tensorboard if 'train/loss' in tensorboard[s]) == [1, 2, 3]
  assert compared >= 3 * 10, compared
  # The depth panels of step 2 (image_every_steps=2): W&B stores the image list as nested keys.
  assert history[2]['train/depth/_type'] == 'images/separated' and history[2]['train/depth/count'] == 2
  # The resolved config is the run config.
  config = {}
  for run in runs:
    for record in read_wandb_records(glob.glob(os.path.join(run, '*.wandb'))[0]):
      if record.WhichOneof('record_type') == 'run':
        config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        assert list(record.run.tags) == ['ci', 'demo'] and record.run.project == 'packnet-test'
  # The resumed run's config (the last update) is the resolved config the workdir holds.
  resolved = json.loads((workdir / 'config.json').read_text())
  assert {k: v for k, v in config.items() if k != '_wandb'} == resolved
  assert config['arch']['max_steps'] == 3
  print(f'W&B run {run_id}: {compared} scalars read back from the offline files equal TensorBoard\'s; '
        f'loss by step: {[round(history[s]["train/loss"], 6) for s in (1, 2, 3)]}')


def test_enabled_without_wandb_is_one_error_line(tmp_path):
  """`wandb` hidden from the import system: one error line that says what to install."""
  data = make_synthetic_kitti(tmp_path / 'kitti_synth', 4, *SHAPE)
  hide = tmp_path / 'hide'
  hide.mkdir()
  (hide / 'wandb.py').write_text("raise ImportError('hidden by the test')\n")
  env = single_device_env(fast_compile=True)
  env['PYTHONPATH'] = os.pathsep.join([str(hide), env.get('PYTHONPATH', '')])
  proc = subprocess.run([sys.executable, '-m', 'packnet_jax.main', f'--config=configs/demo.py:{data}',
                         f'--workdir={tmp_path / "w"}', '--config.logging.wandb.enabled=True',
                         f'--config.datasets.augmentation.image_shape=({SHAPE[0]},{SHAPE[1]})',
                         '--config.arch.max_steps=1'], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  lines = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert proc.returncode == 1 and lines == [
      "error: config key 'logging.wandb.enabled': needs the wandb package: pip install packnet-jax[wandb] "
      '(or pip install -r requirements-wandb.txt)'], proc.stderr[-2000:]
