"""The vendored reference fixtures (tests/fixtures/reference, see its README) and the NCHW → NHWC move."""
import json
import pathlib

import numpy as np

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / 'fixtures' / 'reference'


def load_npz(name):
  with np.load(FIXTURES / name) as f:
    return {k: f[k] for k in f.files}


def load_json(name):
  return json.loads((FIXTURES / name).read_text())


def nchw_to_nhwc(x):
  """[..., C, H, W] → [..., H, W, C] for a reference array."""
  x = np.asarray(x)
  return np.moveaxis(x, -3, -1)
