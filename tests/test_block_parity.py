"""Single blocks vs `layers_units.npz` (weights loaded through the keymap), BatchNorm and keymap units."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.fixtures import load_json, load_npz, nchw_to_nhwc
from lib import recipe
from packnet_jax.convert import keymap
from packnet_jax.models import layers, packing
from packnet_jax.models import packnet_blocks as blocks
from packnet_jax.models.fast import pack_conv
from packnet_jax.models.depth_resnet import ConvBlock, Conv3x3, scale_inv_depth
from packnet_jax.models.resnet_encoder import BatchNorm

ATOL = 2e-5

BLOCKS = {
    'conv2d_k5_s1': lambda: blocks.Conv2D(32, 5, 1),
    'conv2d_k3_s2': lambda: blocks.Conv2D(32, 3, 2),
    'conv2d_k7_s1': lambda: blocks.Conv2D(16, 7, 1),
    'residualconv_s1': lambda: blocks.ResidualConv(32, 1),
    'residualconv_s2': lambda: blocks.ResidualConv(32, 2),
    'invdepth': lambda: blocks.InvDepth(),
    'pack3d_d8_k3': lambda: blocks.PackLayerConv3d(3, d=8),
    'pack3d_d8_k5': lambda: blocks.PackLayerConv3d(5, d=8),
    'pack3d_d4_k3': lambda: blocks.PackLayerConv3d(3, d=4),
    'unpack3d_d8_k3': lambda: blocks.UnpackLayerConv3d(32, 3, d=8),
    'unpack3d_d4_k3': lambda: blocks.UnpackLayerConv3d(16, 3, d=4),
    'resnet_convblock': lambda: ConvBlock(32),
    'resnet_conv3x3_reflect': lambda: Conv3x3(1),
}


@pytest.fixture(scope='module')
def units():
  return load_npz('layers_units.npz')


@pytest.fixture(scope='module')
def manifest():
  return load_json('layers_units.json')


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_block_matches_reference(name, units, manifest):
  params = {k.split('/param/', 1)[1]: v for k, v in units.items() if k.startswith(f'{name}/param/')}
  assert set(params) == set(manifest[name]['params'])
  # The stored weights are the recipe with the layer prefix.
  expected = recipe.recipe_state_dict([(k, v.shape) for k, v in params.items()], prefix=f'{name}.')
  for k, v in params.items():
    np.testing.assert_array_equal(v, expected[k], err_msg=k)

  module = BLOCKS[name]()
  x = nchw_to_nhwc(units[f'{name}/input'])
  template = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  variables, missing, unused = keymap.torch_state_dict_to_variables(params, template)
  assert missing == [] and unused == []
  out = jax.jit(module.apply)(variables, x)
  np.testing.assert_allclose(out, nchw_to_nhwc(units[f'{name}/output']), rtol=0, atol=ATOL)


def test_packing_and_pixel_shuffle_exact(units):
  packed = jax.jit(packing.packing)(nchw_to_nhwc(units['packing_r2/input']))
  np.testing.assert_array_equal(packed, nchw_to_nhwc(units['packing_r2/output']))
  shuffled = jax.jit(packing.pixel_shuffle)(nchw_to_nhwc(units['pixel_shuffle_r2/input']))
  np.testing.assert_array_equal(shuffled, nchw_to_nhwc(units['pixel_shuffle_r2/output']))
  x = jnp.arange(2 * 4 * 6 * 5, dtype=jnp.float32).reshape(2, 4, 6, 5)
  np.testing.assert_array_equal(packing.pixel_shuffle(packing.packing(x)), x)


def test_packing_odd_size_raises():
  with pytest.raises(ValueError, match=r'packing: x: .*\(1, 5, 6, 2\)'):
    packing.packing(jnp.zeros((1, 5, 6, 2)))


def test_disp_to_depth_head(units):
  inv = jax.jit(scale_inv_depth)(units['disp_to_depth/sigmoid'])
  np.testing.assert_allclose(inv, units['disp_to_depth/scaled_inv_depth'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(1.0 / inv, units['disp_to_depth/depth'], rtol=1e-5)


def test_upsample_nearest2():
  x = jnp.arange(6.0).reshape(1, 2, 3, 1)
  up = layers.upsample_nearest2(x)
  assert up.shape == (1, 4, 6, 1)
  np.testing.assert_array_equal(up[0, :, :, 0], np.kron(np.arange(6.0).reshape(2, 3), np.ones((2, 2))))


# ---------------------------------------------------------------------------- BatchNorm


def _bn_variables(c, rng):
  return {'params': {'scale': 1 + 0.1 * rng.standard_normal(c).astype(np.float32),
                     'bias': 0.1 * rng.standard_normal(c).astype(np.float32)},
          'batch_stats': {'mean': 0.1 * rng.standard_normal(c).astype(np.float32),
                          'var': 1 + np.abs(rng.standard_normal(c)).astype(np.float32)}}


def test_batchnorm_train_matches_torch_formula():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32) * 2 + 1
  v = _bn_variables(4, rng)
  y, state = jax.jit(functools.partial(BatchNorm().apply, train=True, mutable=['batch_stats']))(v, x)
  xd = x.astype(np.float64)
  mean, var = xd.mean((0, 1, 2)), xd.var((0, 1, 2))
  n = 2 * 3 * 5
  expected = (xd - mean) / np.sqrt(var + 1e-5) * v['params']['scale'] + v['params']['bias']
  np.testing.assert_allclose(y, expected, atol=1e-5)
  np.testing.assert_allclose(state['batch_stats']['mean'], 0.9 * v['batch_stats']['mean'] + 0.1 * mean,
                             rtol=1e-6, atol=1e-7)
  # Unbiased variance in the running update (torch), biased one for normalising.
  np.testing.assert_allclose(state['batch_stats']['var'],
                             0.9 * v['batch_stats']['var'] + 0.1 * var * n / (n - 1), rtol=1e-6)


def test_batchnorm_eval_uses_running_stats():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
  v = _bn_variables(4, rng)
  y = BatchNorm().apply(v, x)
  bs, p = v['batch_stats'], v['params']
  np.testing.assert_allclose(y, (x - bs['mean']) / np.sqrt(bs['var'] + 1e-5) * p['scale'] + p['bias'],
                             rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- keymap


@pytest.fixture(scope='module')
def residual_template():
  return blocks.ResidualBlock(32, 2).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 16)))


def test_keymap_paths_and_layouts(residual_template):
  assert keymap.flax_path_to_torch_key(('params', '0', 'conv1', 'conv_base', 'kernel')) == '0.conv1.conv_base.weight'
  assert keymap.flax_path_to_torch_key(('batch_stats', 'encoder', 'bn1', 'var')) == 'encoder.bn1.running_var'
  entries = dict(keymap.expected_torch_entries(residual_template))
  assert entries['0.conv1.conv_base.weight'] == (32, 16, 3, 3)
  assert entries['1.conv3.weight'] == (32, 32, 1, 1)
  assert entries['0.normalize.weight'] == (32,)
  assert keymap.torch_shape('kernel', (3, 3, 3, 1, 8)) == (8, 1, 3, 3, 3)
  assert keymap.torch_shape('kernel', (512, 1000)) == (1000, 512)
  oihw = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
  hwio = keymap.torch_to_flax_array(oihw, 'k', 'kernel', (5, 7, 3, 2))
  assert hwio[4, 6, 2, 1] == oihw[1, 2, 4, 6]
  oidhw = np.arange(8 * 27, dtype=np.float32).reshape(8, 1, 3, 3, 3)
  dhwio = keymap.torch_to_flax_array(oidhw, 'k', 'kernel', (3, 3, 3, 1, 8))
  assert dhwio[0, 1, 2, 0, 5] == oidhw[5, 0, 0, 1, 2]


def test_keymap_roundtrip_missing_unused_alias(residual_template):
  sd = keymap.variables_to_torch_state_dict(residual_template)
  variables, missing, unused = keymap.torch_state_dict_to_variables(sd, residual_template)
  assert missing == [] and unused == []
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables, jax.device_get(residual_template))

  # Dropout checkpoints store the shortcut as conv3.0.*; extra and missing keys are reported.
  sd2 = dict(sd)
  sd2['0.conv3.0.weight'] = sd2.pop('0.conv3.weight')
  del sd2['1.normalize.bias']
  sd2['extra.weight'] = np.zeros(3, np.float32)
  variables, missing, unused = keymap.torch_state_dict_to_variables(sd2, residual_template)
  assert missing == ['1.normalize.bias'] and unused == ['extra.weight']
  np.testing.assert_array_equal(variables['params']['0']['conv3']['kernel'],
                                residual_template['params']['0']['conv3']['kernel'])


def test_keymap_shape_mismatch_raises(residual_template):
  sd = keymap.variables_to_torch_state_dict(residual_template)
  sd['0.conv1.conv_base.weight'] = np.zeros((32, 16, 5, 5), np.float32)
  with pytest.raises(ValueError, match=r'0\.conv1\.conv_base\.weight: expected torch shape \(32, 16, 3, 3\)'):
    keymap.torch_state_dict_to_variables(sd, residual_template)


def test_keymap_batchnorm_buffers():
  template = BatchNorm().init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 3)))
  template = {'params': {'bn1': template['params']}, 'batch_stats': {'bn1': template['batch_stats']}}
  sd = keymap.variables_to_torch_state_dict(template)
  assert sorted(sd) == ['bn1.bias', 'bn1.num_batches_tracked', 'bn1.running_mean', 'bn1.running_var', 'bn1.weight']
  assert sd['bn1.num_batches_tracked'].dtype == np.int64
  sd['bn1.running_var'] = np.full(3, 2.0, np.float32)
  variables, missing, unused = keymap.torch_state_dict_to_variables(sd, template)
  assert missing == [] and unused == []  # num_batches_tracked is accepted, not reported.
  np.testing.assert_array_equal(variables['batch_stats']['bn1']['var'], [2.0, 2.0, 2.0])


def _conv3d_oracle(variables, x):
  """The Conv3d as XLA's native 3-D convolution over (depth, H, W) of depth-major x [B,D,H,W]."""
  kernel, bias = variables['params']['kernel'], variables['params']['bias']
  y = jax.lax.conv_general_dilated(x[..., None], kernel, (1, 1, 1), [(1, 1)] * 3,
                                   dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
  return y + bias


def test_conv3d_unit_matches_native_3d_conv_forward_and_backward():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 12, 5, 7))  # depth-major [B, D, H, W]
  unit = blocks.Conv3dUnit(4)
  variables = unit.init(jax.random.PRNGKey(1), x)
  variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)  # non-zero bias
  out = jax.jit(unit.apply)(variables, x)
  assert out.shape == (2, 12, 5, 7, 4)
  np.testing.assert_allclose(out, _conv3d_oracle(variables, x), rtol=0, atol=1e-5)
  # Closed form at one output: feature k, depth c, pixel (y, x) = bias + the 27 taps.
  k, c, y, xx = 3, 4, 2, 3
  kern, bias = variables['params']['kernel'], variables['params']['bias']
  xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (1, 1)))
  expected = bias[k] + sum(xp[0, c + dz, y + dy, xx + dx] * kern[dz, dy, dx, 0, k]
                           for dz in range(3) for dy in range(3) for dx in range(3))
  np.testing.assert_allclose(out[0, c, y, xx, k], expected, rtol=1e-5)
  # Gradients (inputs and parameters) of a non-linear loss.
  weights = jax.random.normal(jax.random.PRNGKey(2), out.shape)

  def loss(fn):
    return lambda v, x: jnp.sum(jnp.sin(fn(v, x)) * weights)
  ours = jax.jit(jax.grad(loss(unit.apply), argnums=(0, 1)))(variables, x)
  oracle = jax.jit(jax.grad(loss(_conv3d_oracle), argnums=(0, 1)))(variables, x)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), ours, oracle)


def test_depth_major_layouts_match_nhwc_helpers():
  """packing_depth_major / pixel_shuffle_depth_major = packing / pixel_shuffle with the Conv3d's channel view."""
  x = jnp.arange(2 * 4 * 6 * 5, dtype=jnp.float32).reshape(2, 4, 6, 5)
  np.testing.assert_array_equal(jnp.moveaxis(packing.packing_depth_major(x), 1, -1), packing.packing(x))
  y = jnp.arange(2 * 8 * 3 * 5 * 4, dtype=jnp.float32).reshape(2, 8, 3, 5, 4)  # [B, D, H, W, d]
  nhwc = pack_conv.depth_major_to_nhwc(y)
  assert nhwc[1, 2, 3, 2 * 8 + 5] == y[1, 5, 2, 3, 2]  # channel k·D + c
  np.testing.assert_array_equal(packing.pixel_shuffle_depth_major(y), packing.pixel_shuffle(nhwc))


def test_group_norm_matches_flax_and_rejects_bad_channels():
  x = 3 * jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 32)) + 1
  ours = layers.GroupNorm(num_groups=16)
  variables = ours.init(jax.random.PRNGKey(1), x)
  variables = {'params': {'scale': 1 + jnp.arange(32.0) / 32, 'bias': jnp.arange(32.0) / 64}}
  flax_gn = nn.GroupNorm(num_groups=16, epsilon=1e-5, use_fast_variance=False)
  np.testing.assert_allclose(ours.apply(variables, x), flax_gn.apply(variables, x), rtol=0, atol=2e-6)
  with pytest.raises(ValueError, match=r'GroupNorm: x: channels must be a multiple of 16'):
    ours.init(jax.random.PRNGKey(1), jnp.zeros((1, 2, 2, 24)))


def test_elu_is_torch_elu_within_float32_rounding():
  x = jnp.concatenate([jnp.linspace(-20, 5, 100_001), jnp.array([0.0, -0.0, -1e-30, 1e-30, jnp.inf, -jnp.inf, jnp.nan])])
  with jax.enable_x64():
    exact = np.where(np.asarray(x, np.float64) > 0, x, np.expm1(np.asarray(x, np.float64)))
  got = np.asarray(layers.elu(x))
  np.testing.assert_allclose(got, exact, rtol=0, atol=1.2e-7, equal_nan=True)
  # torch's ELU backward (input saved) is exp(x) for x <= 0; jax's expm1 rule (y + 1) loses it below ~-17
  finite = x[:100_001]
  np.testing.assert_allclose(jax.vmap(jax.grad(layers.elu))(finite),
                             np.where(finite > 0, 1.0, np.exp(np.asarray(finite, np.float64))), rtol=1e-6, atol=0)
  half = x.astype(jnp.bfloat16)
  np.testing.assert_array_equal(layers.elu(half), nn.elu(half))


@pytest.mark.parametrize('shape', [(2, 5, 7, 32), (1, 12, 20, 16), (3, 4, 6, 256), (1, 13, 1, 3), (2, 8, 8, 1)])
def test_spatial_sum_is_the_sum_over_h_and_w(shape):
  with jax.enable_x64():
    x = jax.random.normal(jax.random.PRNGKey(shape[-1]), shape, dtype=jnp.float64)
    np.testing.assert_allclose(layers.spatial_sum(x), jnp.sum(x, (1, 2)), rtol=1e-13, atol=1e-13)
  # float32 at a real size: the partial sums keep the error at or below the one-pass sum's
  x = 1 + jax.random.uniform(jax.random.PRNGKey(0), (1, 96, 320, 16))
  exact = np.asarray(x, np.float64).sum((1, 2))
  assert np.abs(np.asarray(layers.spatial_sum(x)) - exact).max() <= max(
      np.abs(np.asarray(jnp.sum(x, (1, 2))) - exact).max(), 1e-7 * exact.max())


def _pack_conv_oracle(packed, kernel3d, bias3d, kernel2d, bias2d):
  """The reference's pair with XLA's native 3-D convolution, in float64: [B,H,W,D] → [B,H,W,C]."""
  with jax.enable_x64():
    x = jnp.moveaxis(jnp.asarray(packed, jnp.float64), -1, 1)[..., None]  # [B, D, H, W, 1]
    y = jax.lax.conv_general_dilated(x, jnp.asarray(kernel3d, jnp.float64), (1, 1, 1), [(1, 1)] * 3,
                                     dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC')) + bias3d
    b, depth, h, w, d = y.shape
    y = y.transpose(0, 2, 3, 4, 1).reshape(b, h, w, d * depth)  # channel f·D + z
    p = kernel2d.shape[0] // 2
    out = jax.lax.conv_general_dilated(y, jnp.asarray(kernel2d, jnp.float64), (1, 1), [(p, p)] * 2,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias2d
    return np.asarray(out)


@pytest.mark.parametrize('k, d, hw', [(5, 4, (7, 9)), (3, 8, (4, 6)), (3, 2, (3, 3))])
def test_fused_pack_conv_is_the_reference_pair_forward_and_backward(k, d, hw):
  """Fused (one (k+2)² conv less its border ring) = direct = the native 3-D conv pair, values and gradients."""
  keys = jax.random.split(jax.random.PRNGKey(0), 5)
  depth, c = 8, 6
  packed = jax.random.normal(keys[0], (2, *hw, depth))
  params = (jax.random.normal(keys[1], (3, 3, 3, 1, d)), jax.random.normal(keys[2], (d,)),
            jax.random.normal(keys[3], (k, k, d * depth, c)) / 10, jax.random.normal(keys[4], (c,)))
  oracle = _pack_conv_oracle(packed, *params)
  fused = jax.jit(pack_conv.fused)(packed, *params)
  direct = jax.jit(pack_conv.direct)(jnp.moveaxis(packed, -1, 1), *params)
  assert fused.shape == oracle.shape == (2, *hw, c)
  scale = np.abs(oracle).max()
  np.testing.assert_allclose(fused, oracle, rtol=0, atol=2e-6 * scale)
  np.testing.assert_allclose(direct, oracle, rtol=0, atol=2e-6 * scale)
  weights = jax.random.normal(jax.random.PRNGKey(9), oracle.shape)

  def loss(fn, depth_major):
    def f(x, *p):
      return jnp.sum(jnp.tanh(fn(jnp.moveaxis(x, -1, 1) if depth_major else x, *p)) * weights)
    return jax.jit(jax.grad(f, argnums=(0, 1, 2, 3, 4)))
  g_fused, g_direct = loss(pack_conv.fused, False)(packed, *params), loss(pack_conv.direct, True)(packed, *params)
  for a, b in zip(g_fused, g_direct):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_pack_conv_regions_add_their_gradients_in_place():
  """_with_regions: the slices' values, autodiff's gradient, and no zero-padded full-size cotangent.

  Autodiff's gradient of a slice is a zero-padded copy of the whole map; in the
  PackNet01 train step (batch 4, 192×640) XLA kept four such 130 MB copies
  alive at its memory peak. The custom backward adds each region's cotangent
  into the map's own (dynamic_update_slice) and pads nothing.
  """
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 10, 12, 3))
  regions = (((0, 3), (0, 12)), ((7, 10), (0, 12)), ((0, 10), (0, 2)), ((1, 9), (10, 12)))
  weights = [jax.random.normal(jax.random.PRNGKey(i + 1), (2, b - a, d - c, 3))
             for i, ((a, b), (c, d)) in enumerate(regions)]

  def loss(split):
    def f(x):
      whole, *parts = split(x)
      return jnp.sum(jnp.sin(whole)) + sum(jnp.sum(jnp.tanh(p) * w) for p, w in zip(parts, weights))
    return f
  custom = loss(lambda x: pack_conv._with_regions(x, regions))  # pylint: disable=protected-access
  plain = loss(lambda x: (x,) + tuple(x[:, a:b, c:d] for (a, b), (c, d) in regions))
  whole, *parts = pack_conv._with_regions(x, regions)  # pylint: disable=protected-access
  np.testing.assert_array_equal(whole, x)
  for part, ((a, b), (c, d)) in zip(parts, regions):
    np.testing.assert_array_equal(part, x[:, a:b, c:d])
  np.testing.assert_allclose(jax.grad(custom)(x), jax.grad(plain)(x), rtol=1e-6, atol=1e-6)
  primitives = lambda f: {e.primitive.name for e in jax.make_jaxpr(jax.grad(f))(x).jaxpr.eqns}
  assert 'pad' not in primitives(custom) and 'dynamic_update_slice' in primitives(custom)
  assert 'pad' in primitives(plain)  # the check can fail


def test_pack_conv_chooses_fused_at_real_size_and_direct_when_tiny():
  """The static cost rule: PackNet01's first packing layer fuses; a 2×2 one (no interior) cannot."""
  assert pack_conv.use_fused(4, 96, 320, 256, 8, 5, 64)  # pack1 at 192×640
  assert not pack_conv.use_fused(2, 2, 6, 2048, 8, 3, 512)  # pack5 of the 64×192 fixture
  with pytest.raises(ValueError, match='H and W must exceed 4'):
    pack_conv.fused(jnp.zeros((1, 2, 6, 4)), jnp.zeros((3, 3, 3, 1, 2)), jnp.zeros(2), jnp.zeros((5, 5, 8, 3)),
                    jnp.zeros(3))


def test_packnet01_with_every_packing_layer_fused_matches_reference(monkeypatch):
  """The 64×192 fixture is too small for the cost rule to fuse; force it wherever the border allows.

  pack1..pack4 then run fused (pack5's 2×6 map has no interior), and the eval
  output must still match the reference to the network parity tolerance.
  """
  from test_network_parity import ATOL_INV_DEPTH, _load_net  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import PackNet01  # pylint: disable=import-outside-toplevel
  calls = []

  def always(batch, h, w, depth, d, k, c):
    calls.append((h, w, k, h > 2 * (k // 2) and w > 2 * (k // 2)))
    return calls[-1][-1]
  monkeypatch.setattr(pack_conv, 'use_fused', always)
  data = load_npz('net_PackNet01_1A.npz')
  rgb = nchw_to_nhwc(data['input_rgb'])
  module = PackNet01(version='1A')
  variables = _load_net('PackNet01_1A', module, rgb)
  calls.clear()
  out = jax.jit(module.apply)(variables, rgb)
  assert [fused for *_, fused in calls] == [True, True, True, True, False]
  np.testing.assert_allclose(out, nchw_to_nhwc(data['eval_inv_depth']), rtol=0, atol=ATOL_INV_DEPTH)


def test_fused_packing_layer_never_holds_the_conv3d_output(monkeypatch):
  """Compiled memory of a packing layer's value and gradient, fused vs direct formulation.

  The direct formulation holds the d·D-channel intermediate and its gradient
  (≥ 2× its size); the fused one, chosen by the cost rule at this shape, never
  creates it and needs less than half as much.
  """
  x = jnp.zeros((1, 256, 256, 16))
  layer = blocks.PackLayerConv3d(5, d=8)
  variables = layer.init(jax.random.PRNGKey(0), x)
  assert pack_conv.use_fused(1, 128, 128, 64, 8, 5, 16)
  intermediate_bytes = 128 * 128 * (8 * 64) * 4

  def temp_bytes():
    def grads(v, x):  # a new function each time: no trace cache across formulations
      return jax.grad(lambda v, x: jnp.sum(layer.apply(v, x) ** 2), argnums=(0, 1))(v, x)
    return jax.jit(grads).lower(variables, x).compile().memory_analysis().temp_size_in_bytes
  fused = temp_bytes()
  monkeypatch.setattr(pack_conv, 'use_fused', lambda *shape: False)
  direct = temp_bytes()
  assert direct >= 2 * intermediate_bytes and fused < 0.5 * direct, (fused, direct, intermediate_bytes)
