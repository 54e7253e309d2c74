"""The numpy weight recipe reproduces the fixture manifests bit-exactly."""
import numpy as np
import pytest

from lib.fixtures import load_json
from lib import recipe

NETS = ['PackNet01_1A', 'PackNet01_1B', 'PackNetSlim01_1A', 'DepthResNet18', 'DepthResNet50',
        'PoseNet', 'PoseResNet18']


@pytest.mark.parametrize('net', NETS)
def test_recipe_matches_manifest(net):
  manifest = load_json(f'net_{net}.json')['state_dict']
  sd = recipe.recipe_state_dict([(e['key'], e['shape']) for e in manifest])
  for e in manifest:
    v = sd[e['key']]
    assert list(v.shape) == e['shape'], e['key']
    if 'sum' in e:
      assert float(v.astype(np.float64).sum()) == pytest.approx(e['sum'], rel=0, abs=1e-9), e['key']
      assert float(np.abs(v.astype(np.float64)).sum()) == pytest.approx(e['abs_sum'], rel=0, abs=1e-9), e['key']
    if 'first' in e:
      assert float(v.reshape(-1)[0]) == e['first'], e['key']
