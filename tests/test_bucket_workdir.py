"""A workdir in a bucket, against real local servers: train, lose the machine, resume, evaluate.

The commands are the README's, run as subprocesses on one device with the
environment of `bucket_servers` (loopback endpoint, dummy credentials,
metadata look-ups blocked). The resumed run gets a new, empty TMPDIR and HOME,
as a preempted VM that comes back with an empty disk: all it has is the bucket.
Its final TrainState must equal an uninterrupted local run's bit for bit.

CI runs the S3 round trip; the GCS round trip, a kill during a checkpoint
upload, infer/export and the 2-process run are `slow`.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lib import bucket_servers
from lib.synthetic import ONE_DEVICE_DEMO_FRAMES
from lib.synthetic import make_synthetic_kitti
from lib.env import single_device_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (32, 96)


def _require(scheme):
  missing = bucket_servers.missing_packages(scheme)
  if missing:
    pytest.skip(f'{scheme}:// tests need {", ".join(missing)} (pip install -r requirements-cloud.txt)')


@pytest.fixture(scope='module')
def s3():
  _require('s3')
  with bucket_servers.s3_server() as server:
    yield server


@pytest.fixture(scope='module')
def gcs():
  _require('gs')
  with bucket_servers.gcs_server() as server:
    yield server


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  return make_synthetic_kitti(tmp_path_factory.mktemp('bucket') / 'kitti_synth', ONE_DEVICE_DEMO_FRAMES, *SHAPE)


def fresh_machine_env(server, tmp_path):
  """One device, the server's clients, and an empty TMPDIR / HOME (nothing left from earlier runs)."""
  scratch = tmp_path / f'scratch-{time.monotonic_ns()}'
  (scratch / 'home').mkdir(parents=True)
  env = server.child_env(single_device_env(fast_compile=True))
  return dict(env, TMPDIR=str(scratch), HOME=str(scratch / 'home'), TF_CPP_MIN_LOG_LEVEL='2')


def run(module, *args, env, timeout=600, check=True):
  proc = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)
  if check:
    assert proc.returncode == 0, f'{module} {args} failed:\n{proc.stderr[-3000:]}'
  return proc


def train_args(data, workdir, max_steps, *extra):
  return [f'--config=configs/demo.py:{data}', f'--workdir={workdir}',
          f'--config.datasets.augmentation.image_shape=({SHAPE[0]},{SHAPE[1]})',
          '--config.datasets.train.batch_size=2', '--config.datasets.validation.batch_size=2',
          f'--config.arch.max_steps={max_steps}', '--config.eval.schedule=off',
          '--config.checkpoint.every_steps=2', '--config.logging.log_every_steps=1',
          '--config.logging.image_every_steps=0', *extra]


def final_state(server, workdir):
  """The newest checkpoint's full TrainState tree (numpy), read here through the storage layer."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from packnet_jax.workdir import checkpoints as checkpointing  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import storage  # pylint: disable=import-outside-toplevel
  with bucket_servers.client_env(server):
    storage.use_bucket(str(workdir))
    manager = checkpointing.create_manager(str(workdir), async_save=False)
    step = manager.latest_step()
    tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
    manager.close()
  return step, tree


def assert_trees_equal(a, b):
  import jax  # pylint: disable=import-outside-toplevel
  flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  assert len(flat_a) > 10
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def list_keys(server, url):
  from packnet_jax.utils import storage  # pylint: disable=import-outside-toplevel
  with bucket_servers.client_env(server):
    storage.use_bucket(url)
    return sorted(storage.listdir(url))


def round_trip(server, data, tmp_path, name):
  """Uninterrupted local run (4 steps) vs 2 steps into the bucket + a resume to 4 on a fresh machine."""
  local = tmp_path / 'uninterrupted'
  run('packnet_jax.main', *train_args(data, local, 4), env=fresh_machine_env(server, tmp_path))
  url = f'{server.url}/{name}'
  run('packnet_jax.main', *train_args(data, url, 2), env=fresh_machine_env(server, tmp_path))
  assert list_keys(server, f'{url}/checkpoints') == ['2']
  proc = run('packnet_jax.main', *train_args(data, url, 4), env=fresh_machine_env(server, tmp_path))
  assert f'resumed from {url}/checkpoints at step 2' in proc.stderr
  step_local, tree_local = final_state(server, local)
  step_bucket, tree_bucket = final_state(server, url)
  assert step_local == step_bucket == 4
  assert_trees_equal(tree_local, tree_bucket)
  keys = list_keys(server, url)
  assert 'config.json' in keys and any(k.startswith('events.out.tfevents') for k in keys), keys
  return url


def test_s3_workdir_resumes_on_a_fresh_machine_bit_for_bit_and_evaluates(s3, data, tmp_path):
  url = round_trip(s3, data, tmp_path, 'run')
  out = tmp_path / 'metrics.json'
  run('packnet_jax.eval', f'--checkpoint={url}', '--split=validation', f'--output={out}', '--noprogress',
      env=fresh_machine_env(s3, tmp_path))
  results = json.loads(out.read_text())
  assert results['checkpoint'] == f'{url} (step 4)'
  assert 0.0 < results['depth_gt']['abs_rel'] < 1.0


@pytest.mark.slow
def test_gcs_workdir_resumes_on_a_fresh_machine_bit_for_bit(gcs, data, tmp_path):
  url = round_trip(gcs, data, tmp_path, 'run')
  out = tmp_path / 'metrics.json'
  run('packnet_jax.eval', f'--checkpoint={url}', '--split=validation', f'--output={out}', '--noprogress',
      env=fresh_machine_env(gcs, tmp_path))
  assert json.loads(out.read_text())['checkpoint'] == f'{url} (step 4)'


def _keys_under(server, prefix):
  import boto3  # pylint: disable=import-outside-toplevel
  client = boto3.client('s3', endpoint_url=server.env['AWS_ENDPOINT_URL'], aws_access_key_id='testing',
                        aws_secret_access_key='testing', region_name='us-east-1')
  response = client.list_objects_v2(Bucket=bucket_servers.BUCKET, Prefix=prefix)
  return [o['Key'] for o in response.get('Contents', [])]


@pytest.mark.slow
def test_kill_during_checkpoint_upload_keeps_the_previous_checkpoint(s3, data, tmp_path):
  """The server is frozen while step 4's folder is half uploaded; the trainer is killed; then resume."""
  url, prefix = f'{s3.url}/killed', 'killed/checkpoints/4/'
  log = open(tmp_path / 'killed.log', 'w')  # a file, not a pipe: nobody reads it while the run goes on
  proc = subprocess.Popen([sys.executable, '-m', 'packnet_jax.main', *train_args(data, url, 6)], cwd=ROOT,
                          env=fresh_machine_env(s3, tmp_path), stdout=log, stderr=log)
  frozen = False
  try:
    deadline = time.time() + 1200
    while time.time() < deadline and proc.poll() is None:
      keys = _keys_under(s3, prefix)
      if keys and not any(k.endswith('/commit_success.txt') and k.count('/') == 3 for k in keys):
        os.kill(s3.proc.pid, signal.SIGSTOP)  # the upload now hangs mid-way
        frozen = True
        break
      time.sleep(0.02)
    assert frozen, 'never saw step 4 half uploaded:\n' + (tmp_path / 'killed.log').read_text()[-3000:]
    proc.kill()
    proc.wait()
  finally:
    if frozen:
      os.kill(s3.proc.pid, signal.SIGCONT)
    proc.kill()
    log.close()
  keys = _keys_under(s3, prefix)
  assert keys and f'{prefix}commit_success.txt' not in keys, keys
  step, _ = final_state(s3, url)
  assert step == 2  # the half-written step 4 is not a checkpoint
  print(f'killed during the upload of step 4: {len(keys)} objects of it in the bucket '
        f'({", ".join(k[len(prefix):] for k in keys[:5])}), no commit_success.txt; newest complete '
        f'checkpoint: step {step}')
  resumed = run('packnet_jax.main', *train_args(data, url, 6), env=fresh_machine_env(s3, tmp_path))
  assert f'resumed from {url}/checkpoints at step 2' in resumed.stderr
  local = tmp_path / 'uninterrupted6'
  run('packnet_jax.main', *train_args(data, local, 6), env=fresh_machine_env(s3, tmp_path))
  (_, a), (step_b, b) = final_state(s3, local), final_state(s3, url)
  assert step_b == 6
  assert_trees_equal(a, b)


@pytest.mark.slow
def test_infer_and_export_read_a_bucket_workdir(s3, data, tmp_path):
  url = f'{s3.url}/tools'
  run('packnet_jax.main', *train_args(data, url, 2), env=fresh_machine_env(s3, tmp_path))
  frame = sorted(pathlib.Path(data).rglob('image_02/data/*.png'))[0]
  out = tmp_path / 'infer'
  run('packnet_jax.infer', f'--checkpoint={url}', f'--input={frame}', f'--output={out}', '--quiet',
      env=fresh_machine_env(s3, tmp_path))
  (npz,) = out.glob('*.npz')
  with np.load(npz) as f:
    assert f['inv_depth'].shape == SHAPE and np.all(f['inv_depth'] > 0)
  exported = tmp_path / 'model.stablehlo'
  run('packnet_jax.export', f'--checkpoint={url}', '--format=stablehlo', f'--output={exported}',
      env=fresh_machine_env(s3, tmp_path))
  assert exported.stat().st_size > 1000


@pytest.mark.slow
def test_two_processes_checkpoint_into_one_bucket_and_resume(s3, data, tmp_path):
  """`--multihost` on loopback, 2 processes of one device each, one s3:// workdir; then a resume."""
  url = f'{s3.url}/multihost'

  def launch(max_steps):
    port = bucket_servers.free_port()
    procs, paths = [], []
    for pid in range(2):
      env = dict(fresh_machine_env(s3, tmp_path), JAX_PLATFORMS='cpu')
      args = train_args(data, url, max_steps, '--multihost', f'--coordinator_address=127.0.0.1:{port}',
                        '--num_processes=2', f'--process_id={pid}')
      paths.append(tmp_path / f'multihost-{max_steps}-{pid}.log')
      with open(paths[-1], 'w') as log:  # files, not pipes: one process must not block on a full pipe
        procs.append(subprocess.Popen([sys.executable, '-m', 'packnet_jax.main', *args], cwd=ROOT, env=env,
                                      stdout=log, stderr=log))
    for proc in procs:
      try:
        proc.wait(timeout=900)
      finally:
        proc.kill()
    logs = [path.read_text() for path in paths]
    for proc, log in zip(procs, logs):
      assert proc.returncode == 0, log[-3000:]
    return logs

  logs = launch(2)
  assert 'on 2 device(s)' in logs[0]
  assert list_keys(s3, f'{url}/checkpoints') == ['2']
  logs = launch(4)
  assert all(f'resumed from {url}/checkpoints at step 2' in log for log in logs)
  step, tree = final_state(s3, url)
  assert step == 4 and int(tree['step']) == 4
