"""`Model.init` draws every parameter from the reference's distribution (issue 26).

The vendored `init_stats_<net>.json` (tools/make_init_statistics.py) hold, per
reference parameter, its Flax path and shape and the moments pooled over R
independent reference initialisations (n_ref = R·n draws). One init of ours
(n draws per parameter) must agree within Z standard errors, each derived from
the sample sizes and the reference's own moments:
  mean      |m − m_ref| ≤ Z·σ_ref·sqrt(1/n + 1/n_ref)
  std       |s/σ_ref − 1| ≤ Z·sqrt((κ − 1)/4 · (1/n + 1/n_ref))      (κ = m4; m_k = μ_k/σ^k)
  kurtosis  |k − κ| ≤ Z·sqrt((m8 − κ² + 4κ³ − 4κ·m6) · (1/n + 1/n_ref))   (n ≥ 1000; delta method)
  bound     max|x| ≤ max_ref·(1 + 20/n_ref) for bounded laws (κ < 2.4: a uniform sample of
            n_ref draws falls short of its bound by a fraction t with probability e^(−t·n_ref))
  constant  exactly the reference's value (zero biases, norm scales 1, running statistics).
Tensors of fewer than 30 elements get the bound and constant checks only. The
kurtosis tells uniform (1.8), normal (3) and truncated normal (≈2.4) apart at
equal variance; the bound tells a uniform from any wider law.

Our init is `lazy_init` (the same variables as `init`, without the forward
computation), run eagerly with the 'rbg' key implementation: the laws are the
initialisers', the bit generator only changes the draws, and its per-shape
programs compile about twice as fast as threefry's (eager: one compile per
distinct shape, shared by the networks; a jitted init compiles every parameter).
"""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lib.fixtures import FIXTURES
from packnet_jax.models import DepthResNet, PackNet01, PackNetSlim01, PoseNet, PoseResNet
from packnet_jax.train import model_init
from configs import default

Z = 5.0
SMALL = 30        # below: bound and constant checks only
KURTOSIS_MIN_N = 1000
BOUNDED_KURTOSIS = 2.4
_IMAGE = (1, 64, 64, 3)
_CONTEXTS = (1, 2, 64, 64, 3)
NETWORKS = {  # fixture name → (module, input shapes)
    'DepthResNet18': (DepthResNet(version='18'), (_IMAGE,)),
    'DepthResNet50': (DepthResNet(version='50'), (_IMAGE,)),
    'PoseResNet18': (PoseResNet(version='18'), (_IMAGE, _CONTEXTS)),
    'PackNet01_1A': (PackNet01(version='1A'), (_IMAGE,)),
    'PackNetSlim01_1A': (PackNetSlim01(version='1A'), (_IMAGE,)),
    'PoseNet': (PoseNet(nb_ref_imgs=2), (_IMAGE, _CONTEXTS)),
}


def load_stats(name):
  with open(FIXTURES / f'init_stats_{name}.json') as f:
    return json.load(f)


@functools.lru_cache(maxsize=None)
def initialised(name):
  """{'collection/…/leaf': np.ndarray} of one `init` of network `name` (cached: the tests share it)."""
  module, shapes = NETWORKS[name]
  inputs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  variables = module.lazy_init(jax.random.key(0, impl='rbg'), *inputs)
  flat = traverse_util.flatten_dict(jax.device_get(variables), sep='/')
  return {path: np.asarray(value) for path, value in flat.items()}


def check_entry(entry, seeds, value):
  """Failures of one parameter against its reference statistics: ['path: check: detail', ...]."""
  path = entry['path']
  if list(value.shape) != entry['shape']:
    return [f'{path}: shape: {list(value.shape)} != {entry["shape"]}']
  x = np.asarray(value).ravel()
  if entry['std'] == 0.0:
    return [] if np.all(x == entry['mean']) else [f'{path}: constant: expected all {entry["mean"]}']
  n, n_ref = x.size, entry['n'] * seeds
  both = 1.0 / n + 1.0 / n_ref
  kappa = entry['kurtosis']
  failures = []
  max_abs = float(max(x.max(), -x.min()))
  if kappa < BOUNDED_KURTOSIS and max_abs > entry['max_abs'] * (1.0 + 20.0 / n_ref):
    failures.append(f'{path}: max_abs: {max_abs:.6g} beyond the reference bound {entry["max_abs"]:.6g}')
  if n < SMALL:
    return failures
  # float32 elements, float64 sums (no float64 copy of PackNet's 75M-element kernels).
  mean = float(np.mean(x, dtype=np.float64))
  squares = np.square(x - np.float32(mean))
  std = float(np.sqrt(np.mean(squares, dtype=np.float64)))
  if abs(mean - entry['mean']) > Z * entry['std'] * np.sqrt(both):
    failures.append(f'{path}: mean: {mean:.6g} vs {entry["mean"]:.6g} (std {entry["std"]:.3g}, n {n})')
  if abs(std / entry['std'] - 1.0) > Z * np.sqrt((kappa - 1.0) / 4.0 * both):
    failures.append(f'{path}: std: {std:.6g} vs {entry["std"]:.6g} (n {n})')
  if n >= KURTOSIS_MIN_N:
    kurtosis = float(np.mean(np.square(squares), dtype=np.float64)) / std ** 4
    variance = entry['moment8'] - kappa ** 2 + 4.0 * kappa ** 3 - 4.0 * kappa * entry['moment6']
    if abs(kurtosis - kappa) > Z * np.sqrt(variance * both):
      failures.append(f'{path}: kurtosis: {kurtosis:.4f} vs {kappa:.4f} (n {n})')
  return failures


def check_network(name, values):
  """Failures of `values` ({path: array}) against network `name`'s fixture, over the paths in `values`."""
  stats = load_stats(name)
  failures = []
  for entry in stats['entries']:
    if entry['path'] in values:
      failures += check_entry(entry, stats['seeds'], values[entry['path']])
  return failures


@pytest.mark.parametrize('name', list(NETWORKS))
def test_every_parameter_has_the_reference_distribution(name):
  values = initialised(name)
  stats = load_stats(name)
  assert sorted(values) == sorted(e['path'] for e in stats['entries'])
  assert check_network(name, values) == []


def test_default_threefry_key_too():
  """Training's own keys (jax.random.PRNGKey, threefry) give the same laws (PoseNet: the cheap one)."""
  module, shapes = NETWORKS['PoseNet']
  variables = module.lazy_init(jax.random.PRNGKey(3), *[jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes])
  values = {p: np.asarray(v) for p, v in traverse_util.flatten_dict(jax.device_get(variables), sep='/').items()}
  assert check_network('PoseNet', values) == []


# ----------------------------------------------------------------------------- the checks can fail
def _redraw(name, law, select):
  """The selected parameters of network `name` redrawn from `law` (a jax initializer)."""
  key = jax.random.key(1, impl='rbg')
  out = {}
  for i, (path, value) in enumerate(sorted(initialised(name).items())):
    if select(path, value):
      out[path] = np.asarray(law(jax.random.fold_in(key, i), value.shape, jnp.float32))
  assert out, f'{name}: nothing selected'
  return out


def _first_kernels(name, count):
  """A selector of the first `count` kernels of network `name` (sorted paths; one compile per shape)."""
  kernels = [p for p in sorted(initialised(name)) if p.endswith('/kernel')][:count]
  return lambda path, _: path in kernels


@pytest.mark.parametrize('name', list(NETWORKS))
def test_flax_default_kernels_are_rejected(name):
  """Flax's default (lecun_normal: truncated normal, variance 1/fan_in) fails in every network."""
  redrawn = _redraw(name, jax.nn.initializers.lecun_normal(), _first_kernels(name, 6))
  failures = check_network(name, redrawn)
  assert failures, f'{name}: lecun_normal kernels pass as the reference\'s'
  # Most of the redrawn kernels are caught, not one by chance.
  assert len({f.split(':')[0] for f in failures}) >= len(redrawn) // 2


def test_same_variance_wrong_law_is_rejected_by_the_shape_checks():
  """Where fan_in = fan_out, lecun_normal has xavier's variance: only the bound and the kurtosis tell."""
  path = 'params/conv2/0/conv2/conv_base/kernel'  # 3×3×64×64: fan_in = fan_out = 576
  redrawn = _redraw('PackNet01_1A', jax.nn.initializers.lecun_normal(), lambda p, _: p == path)
  checks = {f.split(': ')[1] for f in check_network('PackNet01_1A', redrawn)}
  assert checks == {'max_abs', 'kurtosis'}


def test_truncated_kaiming_is_rejected_by_the_kurtosis():
  """torchvision's kaiming_normal_ is not truncated: a truncated draw of equal variance is caught."""
  truncated = jax.nn.initializers.variance_scaling(2.0, 'fan_out', 'truncated_normal')
  redrawn = _redraw('DepthResNet18', truncated, lambda p, v: (p.startswith('params/encoder/encoder/layer')
                                                              and p.endswith('kernel') and v.size >= 10**5))
  failures = check_network('DepthResNet18', redrawn)
  assert {f.split(': ')[1] for f in failures} == {'kurtosis'}
  assert len(failures) == len(redrawn)


def test_zero_decoder_biases_are_rejected():
  """torch's default Conv2d bias is U(±1/sqrt(fan_in)), not Flax's zeros (biases of ≥ SMALL elements)."""
  values = {p: np.zeros_like(v) for p, v in initialised('PoseResNet18').items()
            if p.startswith('params/decoder/') and p.endswith('/bias') and v.size >= SMALL}
  assert len(values) == 3  # net.0 … net.2 (256 each); net.3's 12 only get the bound check
  failures = check_network('PoseResNet18', values)
  assert {f.split(':')[0] for f in failures} == set(values)


# ----------------------------------------------------------------------------- loaded weights still win
def test_checkpoint_overwrites_every_initialised_leaf():
  """model_init.load_pretrained replaces all of a freshly initialised PoseNet with the checkpoint's weights."""
  config = default.get_config()
  config.model.pose_net.checkpoint_path = str(FIXTURES / 'ckpt' / 'selfsup_resnet18_posenet_POSEONLY.ckpt')
  fresh = traverse_util.unflatten_dict(initialised('PoseNet'), sep='/')
  variables = {'params': {'pose_net': jax.tree_util.tree_map(np.copy, fresh['params'])}, 'batch_stats': {}}
  loaded = model_init.load_pretrained(variables, config)
  want = model_init._read_weights(config.model.pose_net.checkpoint_path)['pose']  # pylint: disable=protected-access
  got = traverse_util.flatten_dict(loaded['params']['pose_net'], sep='/')
  want_flat = traverse_util.flatten_dict(dict(want['params']), sep='/')
  assert sorted(got) == sorted(want_flat)
  for path, value in got.items():
    np.testing.assert_array_equal(value, want_flat[path], err_msg=path)
    init = fresh['params']
    for part in path.split('/'):
      init = init[part]
    if np.ptp(init) > 0:  # a random leaf: the loaded value is not the random one
      assert not np.array_equal(value, init), path
