"""Shared test setup, and which device layout each test runs on.

Two layouts, both on CPU:
* TWO fake devices (`--xla_force_host_platform_device_count=2`, set below before
  jax is imported) in every pytest worker: all in-process tests, so the pmap
  path (replicated state, [D, B] batches, pmean) runs as on 2 accelerators.
  Among them the pmap-specific checks: test_train_step.py (pmapped step =
  single-device step), test_train_loop.py, test_eval_runner.py (padding over
  2 devices), test_reliability_training.py and test_train_multihost.py.
* ONE device, the layout of a one-GPU or laptop user and of the README: the
  CLI end-to-end tests, which run `python -m packnet_jax.<tool>` in a
  subprocess with `single_device_env()` (the flag removed):
  test_single_device_cli.py (main → eval / infer / export on the workdir →
  resume) and test_ddad_e2e.py; test_every_config.py runs its train steps with
  `jax.jit` on one device in-process; `.ci/run` runs the README demo the same way.
* `fixture(name)` loads a vendored reference fixture from tests/fixtures/reference.
* `nchw_to_nhwc` converts the reference's NCHW arrays to our NHWC layout.

Suite time (the README's `pytest -n 2` must fit CI's 10 minutes on 2 cores):
* One persistent XLA compilation cache per pytest session, shared by the xdist
  workers and every CLI subprocess (JAX_COMPILATION_CACHE_DIR, set below in the
  controller before the workers start): a command run again on the same tiny
  config (main → resume, the kill/resume restarts, eval / infer / export of one
  workdir) loads its compiled programs instead of compiling them again. Only
  programs that took ≥ 0.5 s to compile are stored.
* With xdist, a test file is one unit of work (its module fixtures, e.g. a
  trained workdir, are built once, on one worker), and the files known to be
  long go first, so the short ones fill the gaps at the end.
"""
import json
import os
import pathlib
import shutil
import sys
import tempfile


def _cpu_defaults():
  """packnet_jax.utils.xla_flags.CPU_DEFAULTS, loaded from its file (the package would import jax)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(__file__).resolve().parents[1] / 'packnet_jax' / 'utils' / 'xla_flags.py'
  spec = importlib.util.spec_from_file_location('_xla_flags', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return tuple(module.CPU_DEFAULTS)


# The CPU defaults every entry point applies (packnet_jax.utils.xla_flags), so the parity tests run
# under the same XLA:CPU options as the users' CLIs, plus the two fake devices.
os.environ.setdefault('XLA_FLAGS', ' '.join(('--xla_force_host_platform_device_count=2',)
                                            + _cpu_defaults()))
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'reference'
sys.path.insert(0, str(pathlib.Path(__file__).parent))  # for `import recipe`


# XLA:CPU at backend optimisation level 1 and without LLVM's expensive passes: for the tests that check
# what a command or a config does (resume, skip, kill, one workdir for every tool, every config's train
# step), not XLA's code. Measured on the 2-core machine, the demo's train step at 32x96 on one device
# (compile s / step s): default 26.8 / 0.27, these options 18.2 / 0.22, level 0 16.3 / 1.1 (level 0
# compiled 2 s faster but ran every step 5x slower, which the multi-step CLI tests paid for). The README
# demo in .ci/run runs the entry points' default flags end to end, and the parity tests run in-process
# under those defaults.
FAST_COMPILE_OPTIONS = {'xla_backend_optimization_level': 1, 'xla_llvm_disable_expensive_passes': True}
FAST_COMPILE_FLAGS = tuple(f'--{key}={str(value).lower()}' for key, value in FAST_COMPILE_OPTIONS.items())


def with_fast_compile(env):
  """`env` (a dict) with FAST_COMPILE_FLAGS added to its XLA_FLAGS."""
  flags = env.get('XLA_FLAGS', '').split()
  return dict(env, XLA_FLAGS=' '.join(flags + [f for f in FAST_COMPILE_FLAGS if f not in flags]))


def single_device_env(fast_compile=False):
  """os.environ for a subprocess that sees ONE CPU device (the fake-device flag removed)."""
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split() if 'xla_force_host_platform_device_count' not in f]
  if flags:
    env['XLA_FLAGS'] = ' '.join(flags)
  else:
    env.pop('XLA_FLAGS', None)
  return with_fast_compile(env) if fast_compile else env


def make_synthetic_kitti(output, frames, height, width):
  """Writes tools/make_synthetic_kitti.py's tree into `output` (a subprocess, as a user runs it)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  tool = pathlib.Path(__file__).resolve().parents[1] / 'tools' / 'make_synthetic_kitti.py'
  subprocess.run([sys.executable, str(tool), '--output', str(output), '--frames', str(frames),
                  '--height', str(height), '--width', str(width)], check=True, capture_output=True)
  return output


def load_npz(name):
  with np.load(FIXTURES / name) as f:
    return {k: f[k] for k in f.files}


def load_json(name):
  return json.loads((FIXTURES / name).read_text())


def nchw_to_nhwc(x):
  """[..., C, H, W] → [..., H, W, C] for a reference array."""
  x = np.asarray(x)
  return np.moveaxis(x, -3, -1)


@pytest.fixture(scope='session')
def fixtures_dir():
  return FIXTURES


def pytest_addoption(parser):
  parser.addoption('--runslow', action='store_true', default=False, help='run tests marked slow')


def pytest_collection_modifyitems(config, items):
  rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: file order otherwise
  if config.getoption('--runslow'):
    return
  skip_slow = pytest.mark.skip(reason='slow: run with --runslow')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip_slow)


# --------------------------------------------------------------------------- suite time
# The order in which xdist hands out files: longest first (by the -n 2 durations on the 2-core machine,
# issue 11).
LONGEST_FILES_FIRST = (
    'test_reliability_training.py',
    'test_single_device_cli.py',
    'test_reliability_bad_input.py',
    'test_photometric_loss.py',
    'test_training_noise.py',
    'test_train_loop.py',
    'test_networks.py',
    'test_reference_init.py',
    'test_layers_units.py',
    'test_eval_runner.py',
    'test_every_config.py',
    'test_export.py',
    'test_collapse.py',
    'test_train_multihost.py',
    'test_train_step.py',
    'test_remat.py',
    'test_imagenet_init.py',
    'test_recipe.py',
    'test_ddad_e2e.py',
    'test_sfm_model.py',
)


def pytest_configure(config):
  """Controller (or a run without xdist): a fresh compilation cache folder for this session."""
  if os.environ.get('PYTEST_XDIST_WORKER') or os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return   # an xdist worker inherits the controller's; a cache given by the caller is kept
  try:
    import filelock  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:  # requirements.txt pins it; without it JAX warns on every cache read: no cache
    return
  folder = tempfile.mkdtemp(prefix='packnet_jax_xla_cache_')
  config.stash[_CACHE_FOLDER] = folder
  os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
  # A size limit turns on JAX's file lock around each entry's read/write, so processes that compile the
  # same program at once never read a half-written entry (the limit itself is never reached).
  os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(8 << 30))


_CACHE_FOLDER = pytest.StashKey[str]()


def pytest_unconfigure(config):
  folder = config.stash.get(_CACHE_FOLDER, None)
  if folder:
    shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """`-n N` without --dist: whole files per worker, in collection order (longest first)."""
  if config.getvalue('dist') != 'load':
    return None   # an explicit --dist is kept
  from xdist.scheduler import LoadFileScheduling  # pylint: disable=import-outside-toplevel
  config.option.loadscopereorder = False   # keep LONGEST_FILES_FIRST's order, not "most tests first"
  return LoadFileScheduling(config, log)
