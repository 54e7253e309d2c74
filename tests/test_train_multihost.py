"""Two processes on 127.0.0.1 with jax.distributed train together and stay identical.

Each process has one CPU device and reads its own shard of kitti_synth; the
pmapped step averages gradients across both processes, so after 2 steps both
must hold exactly the same parameters.
"""
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

from lib.env import with_fast_compile

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent

WORKER = r'''
import jax
import numpy as np
jax.distributed.initialize(coordinator_address='127.0.0.1:{port}', num_processes=2, process_id={pid})
assert jax.process_count() == 2 and jax.device_count() == 2, (jax.process_count(), jax.device_count())
from lib import tiny_training
from packnet_jax.train import train
config = tiny_training.tiny_config(max_steps=2)
config.checkpoint.every_steps = 0
config.model.loss.num_scales = 1  # a quarter of the loss's compile time; the scale count is not what is tested
result = train.train_and_evaluate(config, {workdir!r})
leaves = jax.tree_util.tree_leaves(result.state.params)
np.savez({out!r}, *[np.asarray(x) for x in leaves], losses=np.array([h['loss'] for h in result.history]))
'''


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_end_with_identical_params(tmp_path):
  port = _free_port()
  # Fast XLA compilation: both processes compile the step at once on the 2 cores, and what is tested is
  # that they agree, not XLA's code.
  env = with_fast_compile(dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=1',
                               TF_CPP_MIN_LOG_LEVEL='2',
                               PYTHONPATH=os.pathsep.join((str(TESTS), str(ROOT)))))  # lib/ and the repository
  procs, outs = [], []
  for pid in range(2):
    out = tmp_path / f'params_{pid}.npz'
    outs.append(out)
    code = WORKER.format(port=port, pid=pid,
                         workdir=str(tmp_path / 'workdir'), out=str(out))
    procs.append(subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  logs = []
  for proc in procs:
    try:
      logs.append(proc.communicate(timeout=600)[0])
    finally:
      proc.kill()
  for proc, log in zip(procs, logs):
    assert proc.returncode == 0, log[-3000:]
  a, b = (np.load(o) for o in outs)
  assert a.files == b.files
  for key in a.files:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert np.all(np.isfinite(a['losses'])) and len(a['losses']) == 2
  # The final checkpoint of the shared workdir is complete.
  assert (tmp_path / 'workdir' / 'checkpoints' / '2').is_dir()
