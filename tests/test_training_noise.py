"""Float64 mode, and the port's float32 training noise against torch's (tools/training_noise.py).

The port trains DepthResNet18 + PoseNet from the fixture's start in float32 and in float64 and
must be no noisier than the reference is against its own float64 run
(tests/fixtures/reference/training_noise.json, tools/make_noise_fixture.py).
"""
import functools
import json

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest

import training_noise as tn
from packnet_jax.losses import objective
from packnet_jax.models import registry
from packnet_jax.models import sfm_model
from packnet_jax.train import optim
from packnet_jax.train import train_state
from packnet_jax.train import train_step

TORCH = json.loads(tn.FIXTURE.read_text())['scenarios']
# Asserted steps. After step 1 every parameter has moved by ±lr (Adam's first update is lr·sign(g)),
# and the elements whose gradient is below float32's resolution moved by a random sign; from step 3
# on both sides' float32 and float64 gradients are as different as unrelated ones (median relative
# difference ≥ 1 in the fixture): the figures then measure chaos, not rounding.
STEPS = 2
# Port ≤ FACTOR × torch for the medians and 90th percentiles. The figures summarise rounding
# outcomes, not a fixed quantity: torch's own step-1 gradient median changes 3x between two
# scenarios that differ only by the jitter of the input (1.25e-3 plain, 4.19e-3 augmented). The
# port measured 0.1–1.2x torch (docs/performance.md); 2x lets rounding-order changes of that size pass
# and fails a port that is clearly noisier.
FACTOR = 2.0
# The step-1 loss is one float32 sum: its error is a few ulps (port 1-2.2 eps, torch 0.1-1.1 eps).
LOSS_REL_BOUND = 8 * float(np.finfo(np.float32).eps)


# The scenario run in CI: the recipe start needs no initialisation program (compiling our random
# init costs as much as a train step) and the augmented batch runs the flip and jitter path. The
# other three scenarios run with --runslow, and all four in `tools/measure_noise.py training`; the
# two compilations (float32, float64) and float64's slow XLA:CPU convolutions are the cost.
CI_SCENARIOS = ('checkpoint/augmented',)
SLOW_SCENARIOS = ('checkpoint/plain', 'random/plain', 'random/augmented')


@functools.lru_cache(maxsize=None)
def _runs(scenario):
  """{'float32': records, 'float64': records} of the port's first STEPS steps (tools/training_noise.py)."""
  start, augmentation = scenario.split('/')
  make_model, _, _ = tn.build()
  variables = tn.start_variables(make_model(np.float32), start)
  inputs, flip = tn.batch(augmentation == 'augmented')
  return {dtype: tn.run_port(dtype, variables, inputs, flip, steps=STEPS) for dtype in ('float32', 'float64')}


@pytest.mark.parametrize('scenario', CI_SCENARIOS + tuple(
    pytest.param(name, marks=pytest.mark.slow) for name in SLOW_SCENARIOS))
def test_port_is_no_noisier_than_torch(scenario):
  runs = _runs(scenario)
  port, torch = tn.step_figures(runs['float32'], runs['float64']), TORCH[scenario]
  for step, (ours, theirs) in enumerate(zip(port, torch), 1):
    assert ours['grads']['tensors'] == theirs['grads']['tensors']  # the same parameter tensors
    for key in ('grads.median', 'grads.p90', 'params.median', 'params.p90'):
      assert tn.figure(ours, key) <= FACTOR * tn.figure(theirs, key), (step, key)


def test_float64_run_computes_in_float64():
  """The float64 run is float64 throughout, and its first loss differs from float32's by rounding only."""
  runs = _runs(CI_SCENARIOS[0])
  assert {r['dtype'] for r in runs['float64']} == {'float64'} and {r['dtype'] for r in runs['float32']} == {'float32'}
  for record in runs['float64']:
    assert all(x.dtype == np.float64 for x in list(record['grads'].values()) + list(record['params'].values()))
  loss32, loss64 = runs['float32'][0]['loss'], runs['float64'][0]['loss']
  assert 0 < abs(loss32 - loss64) < LOSS_REL_BOUND * abs(loss64)


def _abstract_train_step(model):
  shapes = jax.eval_shape(functools.partial(sfm_model.init_variables, model, image_shape=(64, 192)),
                          jax.random.PRNGKey(0))
  tx, _ = optim.create_optimizer(depth_lr=2e-4, pose_lr=2e-4)
  state = jax.eval_shape(lambda v: train_state.TrainState.create(
      params=v['params'], batch_stats=v['batch_stats'], tx=tx, rng=jax.random.PRNGKey(0)), shapes)
  batch = {'rgb': jnp.zeros((2, 64, 192, 3), jnp.float32), 'rgb_context': jnp.zeros((2, 2, 64, 192, 3), jnp.float32),
           'intrinsics': jnp.zeros((2, 3, 3), jnp.float32)}
  step = train_step.make_train_step(model, objective.LossOptions())
  return step, (state, batch, jax.random.PRNGKey(1))


def test_train_step_is_float64_end_to_end():
  """compute_dtype 'float64': the train step's state and metrics are float64 and nothing large is float32."""
  with jax.enable_x64(True):
    dtype = registry.dtype('float64')
    model = sfm_model.SfmModel(depth_net=registry.build_depth_net('DepthResNet', '18', dtype=dtype),
                               pose_net=registry.build_pose_net('PoseNet', dtype=dtype))
    step, args = _abstract_train_step(model)
    state, metrics = jax.eval_shape(step, *args)
    floats = [x for x in jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state, metrics))
              if jnp.issubdtype(x.dtype, jnp.floating)]
    assert len(floats) > 300 and all(x.dtype == jnp.float64 for x in floats)
    jaxpr = jax.make_jaxpr(step)(*args)
  # float32 values computed inside: only the -0.0 ordering anchors (one number per parameter tensor).
  sizes = [int(np.prod(v.aval.shape)) for eqn in _equations(jaxpr.jaxpr) for v in eqn.outvars
           if getattr(v.aval, 'dtype', None) == jnp.float32]
  assert max(sizes) < len(jax.tree_util.tree_leaves(state.params)) + 10


def _equations(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax_core.jaxprs_in_params(eqn.params):
      yield from _equations(sub)


def test_float64_needs_x64():
  with pytest.raises(ValueError, match="compute_dtype 'float64': needs jax_enable_x64"):
    registry.dtype('float64')
