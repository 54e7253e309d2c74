"""bfloat16 compute vs float32 on the reference fixture input (recipe weights through the keymap).

Measured on net_DepthResNet18.npz (inverse depth in [1.05, 8.87]): max |bf16 − f32| = 0.085,
mean 0.014; relative max 2.0 %, mean 0.29 %. The bounds below leave ~2.5× / ~3× room for other
CPUs/XLA versions while still catching a real bf16 problem (e.g. a float16 overflow, a norm computed
in bf16 without float32 statistics, or a head saturating), which moves the map by tens of percent.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lib.fixtures import load_json, load_npz, nchw_to_nhwc

from lib import recipe
from packnet_jax.convert import keymap
from packnet_jax.models import registry

NAME = 'DepthResNet18'


@pytest.fixture(scope='module')
def predictions():
  data = load_npz(f'net_{NAME}.npz')
  rgb = nchw_to_nhwc(data['input_rgb'])
  manifest = load_json(f'net_{NAME}.json')['state_dict']
  state_dict = recipe.recipe_state_dict([(e['key'], e['shape']) for e in manifest])
  out = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    net = registry.build_depth_net('DepthResNet', '18', dtype=dtype)
    template = jax.eval_shape(net.init, jax.random.PRNGKey(0), rgb)
    variables, missing, unused = keymap.torch_state_dict_to_variables(state_dict, template)
    assert not missing and not unused
    # Parameters stay float32 whatever the compute dtype.
    assert {x.dtype for x in jax.tree_util.tree_leaves(variables)} == {np.dtype(np.float32)}
    out[np.dtype(dtype).name] = jax.jit(net.apply)(variables, rgb)
  return out, nchw_to_nhwc(data['eval_inv_depth'])


def test_bf16_output_is_float32(predictions):
  out, _ = predictions
  assert out['bfloat16'].dtype == jnp.float32 and out['float32'].dtype == jnp.float32


def test_bf16_close_to_f32_on_fixture(predictions):
  out, reference = predictions
  f32, bf16 = np.asarray(out['float32']), np.asarray(out['bfloat16'])
  np.testing.assert_allclose(f32, reference, atol=1e-4)  # the float32 path is the reference's
  diff = np.abs(bf16 - f32)
  rel = diff / np.abs(f32)
  assert rel.max() < 0.05, rel.max()
  assert rel.mean() < 0.01, rel.mean()
  assert diff.max() < 0.25 and diff.mean() < 0.04, (diff.max(), diff.mean())
  # Really computed in bf16 (a silently float32 path would give ~1e-6).
  assert rel.mean() > 1e-4


def test_bf16_depth_ranking_preserved(predictions):
  """Relative depth order between distant pixels survives bf16 (what depth metrics depend on)."""
  out, _ = predictions
  f32, bf16 = np.asarray(out['float32']).ravel(), np.asarray(out['bfloat16']).ravel()
  rng = np.random.RandomState(0)
  i, j = rng.randint(0, f32.size, (2, 20000))
  separated = np.abs(f32[i] - f32[j]) > 0.05 * np.maximum(f32[i], f32[j])
  agree = np.sign(f32[i] - f32[j]) == np.sign(bf16[i] - bf16[j])
  assert agree[separated].mean() > 0.999
