"""The GPU path, checked on this CPU-only machine: depth nets and the SelfSup train step export for CUDA.

`jax.export` lowers for a platform without needing its device, so a trace-time
backend switch or a CPU-only custom call in the path a GPU user runs would show
up here: the CUDA module must serialise and contain no custom call at all
(our networks and losses are plain StableHLO; a CPU library call such as LAPACK
or a backend-specific kernel would appear as one), and `jax.default_backend`
must not be consulted while tracing.
"""
import re

import jax
import jax.numpy as jnp
import pytest
from jax import export as jax_export

from configs import default
from packnet_jax.models import registry
from packnet_jax.train import model_init, optim, train_state, train_step

SHAPE = (1, 64, 64, 3)
DEPTH_NETS = [('PackNet01', '1A'), ('PackNetSlim01', '1A'), ('DepthResNet', '18'), ('DepthResNet', '50')]


def _cuda_module_text(fn, *specs):
  exported = jax_export.export(jax.jit(fn), platforms=('cuda',))(*specs)
  assert exported.platforms == ('cuda',)
  assert len(exported.serialize()) > 0
  return exported.mlir_module()


def _custom_calls(text):
  return sorted(set(re.findall(r'custom_call\s*@([\w.]+)', text)) | set(re.findall(r'call_target_name\s*=\s*"([^"]+)"', text)))


@pytest.fixture(autouse=True)
def no_backend_switch(monkeypatch):
  """A trace-time `jax.default_backend()` switch would pick the CPU path here: make it fail instead."""
  def refuse(*args, **kwargs):
    raise AssertionError('jax.default_backend() called while tracing the GPU program')
  monkeypatch.setattr(jax, 'default_backend', refuse)


def test_custom_call_detection():
  """The check sees a library call when there is one (a CUDA solver for a matrix inverse)."""
  text = _cuda_module_text(jnp.linalg.inv, jax.ShapeDtypeStruct((3, 3), jnp.float32))
  assert _custom_calls(text)


def _specs(tree):
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


@pytest.mark.parametrize('name,version', DEPTH_NETS)
def test_depth_net_eval_forward_exports_for_cuda(name, version):
  net = registry.build_depth_net(name, version)
  rgb = jax.ShapeDtypeStruct(SHAPE, jnp.float32)
  variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), rgb)
  text = _cuda_module_text(lambda v, x: net.apply(v, x, train=False), variables, rgb)
  assert _custom_calls(text) == []
  assert 'stablehlo.convolution' in text
  assert re.search(r'tensor<1x64x64x1xf32>', text)  # the inverse depth output


def test_selfsup_train_step_exports_for_cuda():
  config = default.get_config()
  config.model.name = 'SelfSupModel'
  config.model.depth_net.name, config.model.depth_net.version = 'PackNet01', '1A'
  config.model.pose_net.name = 'PoseNet'
  config.model.remat = 'save_conv'
  model = model_init.build_model(config)
  n = model_init.num_contexts(config)
  b, h, w, _ = SHAPE
  rgb = jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)
  ctx = jax.ShapeDtypeStruct((b, n, h, w, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), rgb, ctx)
  tx, _ = optim.optimizer_from_config(config.optim, steps_per_epoch=10)
  state = jax.eval_shape(lambda v: train_state.TrainState.create(
      params=v['params'], batch_stats=v.get('batch_stats', {}), tx=tx, rng=jax.random.PRNGKey(0)), variables)
  # A jittered training batch: originals + jitter parameters, so the CUDA program includes the colour
  # jitter (integer ops, a lax.map over samples, a switch per op stage).
  batch = {'rgb_original': rgb, 'rgb_context_original': ctx,
           'intrinsics': jax.ShapeDtypeStruct((b, 3, 3), jnp.float32),
           'jitter_factors': jax.ShapeDtypeStruct((b, 3), jnp.float32),
           'jitter_hue_shift': jax.ShapeDtypeStruct((b,), jnp.int32),
           'jitter_order': jax.ShapeDtypeStruct((b, 4), jnp.int32),
           'jitter_gains': jax.ShapeDtypeStruct((b, 3), jnp.float32)}
  step = train_step.make_train_step(model, model_init.loss_options(config),
                                    flip_lr_prob=config.model.loss.flip_lr_prob)
  leaves, treedef = jax.tree_util.tree_flatten(_specs(state))

  def flat_step(leaves, batch, rng):  # flat in and out: the serialiser knows no TrainState/optax types
    new_state, metrics = step(jax.tree_util.tree_unflatten(treedef, leaves), batch, rng)
    return jax.tree_util.tree_leaves(new_state), metrics
  text = _cuda_module_text(flat_step, leaves, batch, jax.ShapeDtypeStruct((2,), jnp.uint32))
  assert _custom_calls(text) == []
  assert 'stablehlo.optimization_barrier' in text  # remat survives into the GPU program
  assert 'stablehlo.case' in text and 'stablehlo.while' in text  # the jitter's per-sample op order
  assert 'stablehlo.bitcast_convert' in text  # its exact float32 products
