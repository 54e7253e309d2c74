"""model.remat: jax.checkpoint per block changes memory, never values (outputs, gradients, BatchNorm stats)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from packnet_jax.models import layers, registry
from packnet_jax.models import packnet_blocks as blocks
from packnet_jax.models.fast.remat import remat
from packnet_jax.models.resnet_encoder import ResNetBlock
from packnet_jax.train import model_init

MODES = ('none', 'full', 'save_conv')


class TinyNet(nn.Module):
  """The depth nets' blocks wrapped as they wrap them: PackNet's stem, residual stage, packing and
  unpacking, a ResNet stage with BatchNorm, the inverse-depth head."""
  remat: str = 'none'
  residual_blocks: int = 2

  @nn.compact
  def __call__(self, rgb, train=False):
    conv2d, pack, unpack, inv_depth = (remat(cls, self.remat) for cls in (
        blocks.Conv2D, blocks.PackLayerConv3d, blocks.UnpackLayerConv3d, blocks.InvDepth))
    x = conv2d(16, 5, name='stem')(rgb)
    x = blocks.ResidualBlock(16, self.residual_blocks, name='res', remat_mode=self.remat)(x, train)
    skip = x
    x = pack(3, d=4, name='pack')(x)
    resnet_block = functools.partial(remat(ResNetBlock, self.remat, static_argnums=(2,)), 16)
    x = layers.Stage(resnet_block, 2, name='layer')(x, train)
    x = unpack(16, 3, d=4, name='unpack')(x)
    return inv_depth(name='disp')(jnp.concatenate([x, skip], -1))


def _loss(module, variables, rgb, mutable=False):  # → (loss, mutated state)
  def loss(params):
    out = module.apply({**variables, 'params': params}, rgb, train=True, mutable=mutable)
    inv, state = out if mutable else (out, {})
    inv = inv if isinstance(inv, list) else [inv]
    return sum(jnp.mean(jnp.sin(3 * i)) for i in inv), state
  return loss


def _value_and_grad(module, variables, rgb, mutable=False):
  fn = jax.value_and_grad(_loss(module, variables, rgb, mutable), has_aux=True)
  return jax.jit(fn)(variables['params'])


def _assert_close_to(ref, rtol, err_msg=''):
  """Within rtol × the tree's largest magnitude: remat changes XLA's fusions, hence float summation
  order (and a bias right before a GroupNorm has a gradient that is pure rounding noise)."""
  scale = max(float(np.abs(x).max()) for x in jax.tree_util.tree_leaves(ref))

  def check(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=err_msg)
  return lambda tree: jax.tree_util.tree_map(check, tree, ref)


def test_remat_keeps_outputs_gradients_and_batchnorm_updates():
  rgb = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 24, 3))
  variables = TinyNet().init(jax.random.PRNGKey(1), rgb)
  (loss_ref, state_ref), grads_ref = _value_and_grad(TinyNet('none'), variables, rgb, mutable=['batch_stats'])
  assert np.isfinite(float(loss_ref)) and float(loss_ref) != 0.0
  # The running statistics did move (one update with momentum 0.1 from mean 0).
  assert float(jnp.abs(state_ref['batch_stats']['layer']['0']['bn1']['mean']).max()) > 1e-3
  for mode in ('full', 'save_conv'):
    (loss, state), grads = _value_and_grad(TinyNet(mode), variables, rgb, mutable=['batch_stats'])
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5, err_msg=mode)
    _assert_close_to(grads_ref, 1e-5, mode)(grads)
    _assert_close_to(state_ref, 1e-5, mode)(state)


@pytest.mark.slow
def test_remat_keeps_depth_resnet_gradients_and_batchnorm_updates():
  rgb = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
  variables = registry.build_depth_net('DepthResNet', '18').init(jax.random.PRNGKey(1), rgb)
  results = {mode: _value_and_grad(registry.build_depth_net('DepthResNet', '18', remat=mode), variables, rgb,
                                   mutable=['batch_stats'])
             for mode in ('none', 'full')}
  (loss_ref, state_ref), grads_ref = results['none']
  (loss, state), grads = results['full']
  np.testing.assert_allclose(loss, loss_ref, rtol=2e-4)  # 18 BatchNorms amplify summation-order noise
  _assert_close_to(grads_ref, 2e-4)(grads)
  _assert_close_to(state_ref, 2e-4)(state)


def _loss_of_params(module, variables, rgb):
  def loss(params):
    inv, _ = module.apply({**variables, 'params': params}, rgb, train=True, mutable=['batch_stats'])
    return jnp.mean(jnp.sin(3 * inv))
  return loss


def _saved_residual_bytes(module, variables, rgb):
  """Bytes the forward pass keeps for the backward pass (the leaves of the VJP closure), traced only."""
  vjp_fn = jax.eval_shape(lambda p: jax.vjp(_loss_of_params(module, variables, rgb), p)[1], variables['params'])
  return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(vjp_fn))


def test_remat_reduces_saved_residuals():
  """What the forward pass hands to the backward pass, per mode (traced, so it holds on every backend)."""
  rgb = jnp.zeros((2, 64, 96, 3))
  variables = TinyNet(residual_blocks=6).init(jax.random.PRNGKey(1), rgb)
  saved = {mode: _saved_residual_bytes(TinyNet(mode, residual_blocks=6), variables, rgb) for mode in MODES}
  # 'full' keeps only block inputs; 'save_conv' also keeps the conv outputs; 'none' keeps those and
  # every block's intermediates (GroupNorm + activation are always recomputed: layers.GroupNorm).
  assert saved['full'] < 0.5 * saved['save_conv'] and saved['save_conv'] < 0.8 * saved['none'], saved


def test_remat_lowers_compiled_memory():
  """The compiled temporaries of value and gradient, per mode, on this backend (CPU in CI).

  jax.checkpoint alone changed nothing here (XLA:CPU removes its optimisation barriers, then merges
  the recomputation into the forward pass): the same bytes in all three modes. fast.remat.remat ties
  the saved activations to the output cotangent in a custom VJP, so the recomputation runs after
  the cotangent exists and differs from the forward computation.
  """
  rgb = jnp.zeros((2, 64, 96, 3))
  variables = TinyNet(residual_blocks=6).init(jax.random.PRNGKey(1), rgb)
  temp = {}
  for mode in MODES:
    fn = jax.value_and_grad(_loss(TinyNet(mode, residual_blocks=6), variables, rgb, ['batch_stats']), has_aux=True)
    temp[mode] = jax.jit(fn).lower(variables['params']).compile().memory_analysis().temp_size_in_bytes
  assert temp['full'] < 0.55 * temp['none'] and temp['full'] < temp['save_conv'] < temp['none'], temp


def _is_checkpoint(eqn):
  return eqn.primitive.name in ('checkpoint', 'remat', 'remat2')


def _count_checkpoints(jaxpr):
  """Blocks at the top level of a jaxpr (Flax modules are inlined) that are a custom VJP around one
  jax.checkpoint call (fast.remat.remat)."""
  return sum(1 for eqn in jaxpr.eqns if eqn.primitive.name == 'custom_vjp_call'
             and [_is_checkpoint(e) for e in eqn.params['call_jaxpr'].jaxpr.eqns] == [True])


@pytest.mark.parametrize('name,version,blocks', [
    # PackNet01: pre_calc, conv1, 10 residual convs, 5 packs, 5 unpacks, 5 iconvs, 4 inverse depths.
    ('PackNet01', '1A', 2 + 10 + 5 + 5 + 5 + 4),
    # DepthResNet18: 8 residual blocks, 10 decoder conv blocks.
    ('DepthResNet', '18', 8 + 10),
])
def test_build_model_plumbs_remat_into_every_block(name, version, blocks):
  config = default.get_config()
  config.model.name = 'SelfSupModel'
  config.model.depth_net.name, config.model.depth_net.version = name, version
  config.model.pose_net.name = 'PoseNet'
  config.model.remat = 'full'
  model = model_init.build_model(config)
  assert model.depth_net.remat == 'full'
  rgb = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  variables = jax.eval_shape(model.depth_net.init, jax.random.PRNGKey(0), rgb)
  jaxpr = jax.make_jaxpr(lambda v, x: model.depth_net.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, rgb)
  assert _count_checkpoints(jaxpr.jaxpr) == blocks
  with pytest.raises(ValueError, match=r"model.remat: expected one of \('none', 'full', 'save_conv'\), got 'all'"):
    registry.build_depth_net(name, version, remat='all')
