"""Depth and pose networks vs the reference fixtures (`net_*.npz`), weights via the keymap.

Each net is filled with the docs/reference.md §9 recipe applied to the torch keys of
`net_<name>.json`, converted by `keymap.torch_state_dict_to_variables` (the
converter's path), and all outputs are computed by one jitted function per net.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.fixtures import load_json, load_npz, nchw_to_nhwc
from lib import noise
from lib import recipe
from packnet_jax.convert import keymap
from packnet_jax.models import (DepthResNet, PackNet01, PackNetSlim01, PoseNet, PoseResNet, build_depth_net,
                                build_pose_net)

DEPTH_FIXTURES = {  # name → constructor(**kwargs), kwargs e.g. dtype
    'PackNet01_1A': functools.partial(PackNet01, version='1A'),
    'PackNet01_1B': functools.partial(PackNet01, version='1B'),
    'PackNetSlim01_1A': functools.partial(PackNetSlim01, version='1A'),
    'DepthResNet18': functools.partial(DepthResNet, version='18'),
    'DepthResNet50': functools.partial(DepthResNet, version='50'),
}
POSE_FIXTURES = {'PoseNet': PoseNet, 'PoseResNet18': functools.partial(PoseResNet, version='18')}
# Tolerances from the float32 noise (max |ours_f32 − ours_f64|; the reference's own: |ours_f64 − ref|),
# measured by `python tools/measure_noise.py --only test_network_parity` (the same with XNNPACK convolutions):
ATOL_INV_DEPTH = 1e-4  # eval / all-scales outputs: noise ≤ 1.0e-5 (≥ 9.7x)
# Train-mode BatchNorm outputs: noise 2.7e-5 (ResNet18, 5.6x) and 2.4e-4 (ResNet50, 8.3x).
TRAINBN_ATOL = {'DepthResNet18': 1.5e-4, 'DepthResNet50': 2e-3}
# Updated running statistics: ResNet18 noise ≤ 4.5e-7 (≥ 9.6x). ResNet50's layer4.1.bn2 (after 50 layers)
# has noise 1.8e-6 in the mean and 3.2e-6 in the variance, which failed an atol of 1e-6 (issue 11): ≥ 5.5x.
BN_STATS_TOL = {'DepthResNet18': dict(rtol=1e-5, atol=1e-6), 'DepthResNet50': dict(rtol=1e-5, atol=1e-5)}
ATOL_POSE = 1e-6  # pose vectors: noise ≤ 1.1e-8 (≥ 88x)


def _load_net(name, module, *inputs):
  """Builds the variables of `module` from the recipe through the keymap; checks the key sets."""
  manifest = load_json(f'net_{name}.json')['state_dict']
  state_dict = recipe.recipe_state_dict([(e['key'], e['shape']) for e in manifest])
  template = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
  variables, missing, unused = keymap.torch_state_dict_to_variables(state_dict, template)
  assert missing == [] and unused == []
  return variables


@functools.lru_cache(maxsize=None)
def _depth_outputs(name, dtype=np.float32):
  data = load_npz(f'net_{name}.npz')
  module = DEPTH_FIXTURES[name](dtype=dtype)
  rgb = nchw_to_nhwc(data['input_rgb']).astype(dtype)
  variables = noise.cast_floats(_load_net(name, module, rgb), dtype)

  @jax.jit
  def run(variables, rgb):
    out = {'eval': module.apply(variables, rgb), 'scales': module.apply(variables, rgb, all_scales=True)}
    if 'batch_stats' in variables:
      out['trainbn'], out['after'] = module.apply(variables, rgb, train=True, mutable=['batch_stats'])
    else:  # No BatchNorm: train mode must give the same pyramid.
      out['train'] = module.apply(variables, rgb, train=True)
    return out

  return data, jax.device_get(run(variables, rgb))


@noise.parity_check(params=sorted(DEPTH_FIXTURES))
def check_depth_net(dtype, name):
  """Eval output and the all-scales pyramid (and the train-mode one for nets without BatchNorm)."""
  data, out = _depth_outputs(name, dtype)
  C = functools.partial(noise.Comparison, atol=ATOL_INV_DEPTH)
  comparisons = [C('eval', out['eval'], nchw_to_nhwc(data['eval_inv_depth']))]
  for kind in ('scales', 'train'):
    if kind in out:
      assert len(out[kind]) == 4
      comparisons += [C(f'{kind}_s{s}', out[kind][s], nchw_to_nhwc(data[f'inv_depth_s{s}'])) for s in range(4)]
  return comparisons


@pytest.mark.parametrize('name', sorted(DEPTH_FIXTURES))
def test_depth_net_matches_reference(name):
  comparisons = check_depth_net(np.float32, name)
  assert comparisons[0].ours.dtype == np.float32 and comparisons[0].ours.shape == (2, 64, 192, 1)
  noise.assert_all(comparisons)


@noise.parity_check(params=sorted(TRAINBN_ATOL))
def check_depth_resnet_train_batchnorm(dtype, name):
  """Train-mode (batch statistics) pyramid and the updated running statistics of two BatchNorms."""
  data, out = _depth_outputs(name, dtype)
  comparisons = [noise.Comparison(f'trainbn_s{s}', out['trainbn'][s], nchw_to_nhwc(data[f'trainbn_inv_depth_s{s}']),
                                  atol=TRAINBN_ATOL[name]) for s in range(4)]
  stats = out['after']['batch_stats']['encoder']['encoder']
  for path, bn in (('bn1', stats['bn1']), ('layer4.1.bn2', stats['layer4']['1']['bn2'])):
    prefix = f'trainbn_after.encoder.encoder.{path}'
    comparisons.append(noise.Comparison(f'{path}.running_mean', bn['mean'], data[f'{prefix}.running_mean'],
                                        **BN_STATS_TOL[name]))
    comparisons.append(noise.Comparison(f'{path}.running_var', bn['var'], data[f'{prefix}.running_var'],
                                        **BN_STATS_TOL[name]))
  return comparisons


@pytest.mark.parametrize('name', sorted(TRAINBN_ATOL))
def test_depth_resnet_train_batchnorm(name):
  noise.assert_all(check_depth_resnet_train_batchnorm(np.float32, name))


@noise.parity_check(params=sorted(POSE_FIXTURES))
def check_pose_net(dtype, name):
  data = load_npz(f'net_{name}.npz')
  module = POSE_FIXTURES[name](dtype=dtype)
  target = nchw_to_nhwc(data['input_rgb']).astype(dtype)
  contexts = np.moveaxis(nchw_to_nhwc(data['input_context']), 0, 1).astype(dtype)  # [N,B,...] → [B,N,H,W,3]
  variables = noise.cast_floats(_load_net(name, module, target, contexts), dtype)

  @jax.jit
  def run(variables, target, contexts):
    out = {'eval': module.apply(variables, target, contexts)}
    if 'batch_stats' in variables:
      out['trainbn'], _ = module.apply(variables, target, contexts, train=True, mutable=['batch_stats'])
    return out

  out = jax.device_get(run(variables, target, contexts))
  assert out['eval'].shape == (2, 2, 6)
  comparisons = [noise.Comparison('eval', out['eval'], data['pose_vec'], atol=ATOL_POSE)]
  if 'trainbn_pose_vec' in data:
    comparisons.append(noise.Comparison('trainbn', out['trainbn'], data['trainbn_pose_vec'], atol=ATOL_POSE))
  return comparisons


@pytest.mark.parametrize('name', sorted(POSE_FIXTURES))
def test_pose_net_matches_reference(name):
  comparisons = check_pose_net(np.float32, name)
  assert comparisons[0].ours.dtype == np.float32
  noise.assert_all(comparisons)


# ---------------------------------------------------------------------------- structure

PARAM_COUNTS = [  # docs/reference.md §2.7: (builder, trainable params incl. fc, BN buffer elements, state-dict entries)
    (lambda: build_depth_net('PackNet01', '1A'), 128_294_020, 0, 216),
    (lambda: build_depth_net('PackNet01', '1B'), 124_164_580, 0, 216),
    (lambda: build_depth_net('PackNetSlim01', '1A'), 76_997_796, 0, 216),
    (lambda: build_depth_net('PackNetSlim01', '1B'), 71_955_300, 0, 216),
    (lambda: build_depth_net('DepthResNet', 18), 14_842_236, 9_620, 150),
    (lambda: build_depth_net('DepthResNet', '34'), 24_950_396, 17_060, 246),
    (lambda: build_depth_net('DepthResNet', '50'), 34_571_132, 53_173, 348),
    (lambda: build_pose_net('PoseNet'), 1_592_684, 0, 30),
    (lambda: build_pose_net('PoseResNet', '18'), 13_013_492, 9_620, 130),
    (lambda: build_pose_net('PoseResNet', '50pt'), 27_274_228, 53_173, 328),
]


def _shape_template(module):
  rgb = jnp.zeros((1, 64, 64, 3))
  if isinstance(module, (PoseNet, PoseResNet)):
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), rgb, jnp.zeros((1, 2, 64, 64, 3)))
  return jax.eval_shape(module.init, jax.random.PRNGKey(0), rgb)


def _size(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize('build,num_params,num_buffers,num_entries', PARAM_COUNTS)
def test_parameter_counts(build, num_params, num_buffers, num_entries):
  template = _shape_template(build())
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(template))
  num_bn = len(jax.tree_util.tree_leaves(template.get('batch_stats', {}))) // 2
  assert _size(template['params']) == num_params
  # BN buffers: running_mean + running_var per channel, plus one num_batches_tracked per BN.
  assert _size(template.get('batch_stats', {})) + num_bn == num_buffers
  assert len(keymap.expected_torch_entries(template)) + num_bn == num_entries


@pytest.mark.parametrize('name', sorted(DEPTH_FIXTURES) + sorted(POSE_FIXTURES))
def test_torch_keys_and_shapes_match_manifest(name):
  module = {**DEPTH_FIXTURES, **POSE_FIXTURES}[name]()
  manifest = {e['key']: tuple(e['shape']) for e in load_json(f'net_{name}.json')['state_dict']
              if not e['key'].endswith('num_batches_tracked')}
  assert dict(keymap.expected_torch_entries(_shape_template(module))) == manifest


@pytest.mark.parametrize('module', [PackNet01(), PackNetSlim01(), DepthResNet('18')])
def test_depth_net_rejects_sizes_not_multiple_of_32(module):
  with pytest.raises(ValueError, match=r'multiples of 32, got shape \(1, 64, 80, 3\)'):
    module.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 80, 3)))
  with pytest.raises(ValueError, match=r'rgb: expected shape \[B,H,W,3\], got \(1, 64, 64, 4\)'):
    module.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 4)))


def test_pose_net_context_count():
  target = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match=r'expected 2 context images \(nb_ref_imgs\), got shape \(1, 3, 32, 32, 3\)'):
    PoseNet().init(jax.random.PRNGKey(0), target, jnp.zeros((1, 3, 32, 32, 3)))
  with pytest.raises(ValueError, match=r'contexts: expected shape \[1,N,32,32,3\]'):
    PoseNet().init(jax.random.PRNGKey(0), target, jnp.zeros((1, 2, 32, 16, 3)))
  # nb_ref_imgs is a module attribute: 4 contexts → 15 input channels, [B,4,6] output.
  module = PoseNet(nb_ref_imgs=4)
  contexts = jnp.zeros((1, 4, 32, 32, 3))
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), target, contexts)
  assert variables['params']['conv1']['0']['kernel'].shape == (7, 7, 15, 16)
  assert jax.eval_shape(module.apply, variables, target, contexts).shape == (1, 4, 6)


def test_invalid_versions_raise():
  rgb = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match='version'):
    PackNet01(version='1C').init(jax.random.PRNGKey(0), rgb)
  with pytest.raises(ValueError, match='version'):
    jax.eval_shape(PoseResNet(version='34').init, jax.random.PRNGKey(0), rgb, jnp.zeros((1, 2, 32, 32, 3)))
  with pytest.raises(ValueError, match='name'):
    build_depth_net('PackNetSAN01')


def test_packnet_slim_1b_forward_fails_like_reference():
  module = PackNetSlim01(version='1B')
  rgb = jnp.zeros((1, 32, 32, 3))
  template = jax.eval_shape(module.init, jax.random.PRNGKey(0), rgb)
  with pytest.raises(ValueError, match='unpack2 output has 64 channels but skip2 has 32'):
    jax.eval_shape(module.apply, template, rgb)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  name = 'DepthResNet18'
  data, out = _depth_outputs(name)
  module = DepthResNet(version='18', dtype=jnp.bfloat16)
  rgb = nchw_to_nhwc(data['input_rgb'])
  variables = _load_net(name, module, rgb)
  assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(variables))
  inv = jax.jit(module.apply)(variables, rgb)
  assert inv.dtype == jnp.float32
  # bf16 has an 8-bit mantissa: close to the float32 result, but not equal.
  err = np.abs(np.asarray(inv) - out['eval'])
  assert 0 < err.mean() < 0.05 * np.abs(out['eval']).mean()


def test_packnet_dropout_train_mode_uses_rng():
  module = PackNet01(dropout=0.5)
  rgb = jax.random.uniform(jax.random.PRNGKey(0), (1, 32, 32, 3))
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), rgb)
  # Dropout only changes the train-mode computation: check it traces and needs a 'dropout' rng.
  with pytest.raises(Exception, match='dropout'):
    jax.eval_shape(functools.partial(module.apply, train=True), variables, rgb)
  out = jax.eval_shape(lambda v, x: module.apply(v, x, train=True, rngs={'dropout': jax.random.PRNGKey(1)}),
                       variables, rgb)
  assert [o.shape for o in out] == [(1, 32, 32, 1), (1, 16, 16, 1), (1, 8, 8, 1), (1, 4, 4, 1)]
