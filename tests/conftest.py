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
  test_cli_one_device_end_to_end.py (main → eval / infer / export on the workdir →
  resume) and test_ddad_end_to_end.py; test_every_config_trains.py runs its train steps with
  `jax.jit` on one device in-process; `.ci/run` runs the README demo the same way.
  `lib.env.single_device_env()` is that environment.
* Shared helpers (fixture loading, subprocess environments, the synthetic KITTI
  tree, the weight recipe, ...) are modules of tests/lib/.

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
import os
import pathlib
import shutil
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

import pytest  # noqa: E402

from lib.fixtures import FIXTURES  # noqa: E402  (after the environment above)


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
    'test_cli_one_device_end_to_end.py',   # compiles the one-device demo step that the next two load
    'test_reliability_training.py',
    'test_multi_dataset.py',
    'test_bucket_workdir.py',
    'test_reliability_bad_input.py',
    'test_training_noise.py',
    'test_block_parity.py',
    'test_photometric_loss.py',
    'test_remat.py',
    'test_network_parity.py',
    'test_train_loop.py',
    'test_train_step.py',
    'test_reference_init.py',
    'test_every_config_trains.py',
    'test_eval_runner.py',
    'test_train_multihost.py',
    'test_export.py',
    'test_imagenet_init.py',
    'test_sfm_model.py',
    'test_collapse_report.py',
    'test_jitter_pipeline.py',
    'test_benchmark.py',
    'test_ddad_end_to_end.py',
    'test_convert.py',
    'test_fixture_recipe.py',
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
