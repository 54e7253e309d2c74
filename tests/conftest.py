"""Shared test setup.

* Two fake CPU devices for every test process (set before jax is imported), so
  pmap/multi-device code runs on CPU exactly as it would on 2 accelerators.
* `fixture(name)` loads a vendored reference fixture from tests/fixtures/reference.
* `nchw_to_nhwc` converts the reference's NCHW arrays to our NHWC layout.
"""
import json
import os
import pathlib
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'reference'
sys.path.insert(0, str(pathlib.Path(__file__).parent))  # for `import recipe`


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
  if config.getoption('--runslow'):
    return
  skip_slow = pytest.mark.skip(reason='slow: run with --runslow')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip_slow)
