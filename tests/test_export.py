"""Export round trips: StableHLO (jax.export, symbolic batch) and ONNX (jax2onnx → onnxruntime).

Small shapes and random weights (the rewrites are weight-independent); the full
PackNet01 ONNX check (Conv3d + GroupNorm, ~500 MB of weights) is marked slow.
"""
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from packnet_jax import cli
from packnet_jax import export
from packnet_jax.models import packnet_blocks as blocks
from packnet_jax.models import registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
from bench.networks import random_variables

SHAPE = (32, 64)
ONNX_ATOL = 1e-4


def _rgb(batch, shape=SHAPE, seed=0):
  return np.random.RandomState(seed).uniform(size=(batch,) + tuple(shape) + (3,)).astype(np.float32)


@pytest.fixture(scope='module')
def resnet18():
  net = registry.build_depth_net('DepthResNet', '18')
  variables = random_variables(net, jnp.zeros((1,) + SHAPE + (3,)))
  fn = export.inference_fn(net, variables)
  return fn, jax.jit(fn)


def _eqn_params(fn, *args):
  """Params of the single primitive equation of fn's jaxpr."""
  (eqn,) = jax.make_jaxpr(fn)(*args).jaxpr.eqns
  return eqn.params


# ----------------------------------------------------------------------------
# The primitive rewrites used for ONNX are exact.


def test_max_pool_and_pad_rewrites_match_lax():
  x = jnp.asarray(np.random.RandomState(1).standard_normal((2, 9, 13, 3)), jnp.float32)

  def pool(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  got = export._max_pool_as_slices(x, **_eqn_params(pool, x))  # pylint: disable=protected-access
  np.testing.assert_array_equal(got, pool(x))

  def pad(x):
    return lax.pad(x, jnp.float32(-2.0), [(0, 0, 0), (1, 2, 0), (0, 3, 0), (0, 0, 0)])
  got = export._pad_as_concat(x, jnp.float32(-2.0), **_eqn_params(pad, x))  # pylint: disable=protected-access
  np.testing.assert_array_equal(got, pad(x))


def test_export_friendly_program_is_exact(resnet18):
  """Inlining + rewrites give the same numbers as the original program (under a symbolic batch)."""
  fn, jitted = resnet18
  spec = export.image_spec(SHAPE)
  friendly = jax.export.export(jax.jit(export.export_friendly(fn, spec)))(spec)
  names = {eqn.primitive.name for eqn in jax.make_jaxpr(export.export_friendly(fn, spec))(spec).jaxpr.eqns}
  assert 'reduce_window_max' not in names and 'pad' not in names and 'jit' not in names
  rgb = _rgb(2)
  np.testing.assert_allclose(friendly.call(rgb), jitted(rgb), atol=1e-5)


# ----------------------------------------------------------------------------
# StableHLO.


def test_stablehlo_round_trip_symbolic_batch(resnet18):
  fn, jitted = resnet18
  data = export.export_stablehlo(fn, SHAPE)
  assert isinstance(data, bytes) and len(data) > 14_000_000 * 4  # weights are baked in
  exported = export.load_stablehlo(data)
  assert str(exported.in_avals[0].shape[0]) == 'B'
  assert tuple(exported.in_avals[0].shape[1:]) == SHAPE + (3,)
  for batch in (2,):  # 2 = the batch the other tests compile `jitted` for
    rgb = _rgb(batch, seed=batch)
    out = exported.call(rgb)
    assert out.shape == (batch,) + SHAPE + (1,)
    np.testing.assert_allclose(out, jitted(rgb), atol=1e-5)


# ----------------------------------------------------------------------------
# ONNX.


@pytest.fixture(scope='module')
def onnx_modules():
  pytest.importorskip('jax2onnx')
  pytest.importorskip('onnxruntime')
  return export


def test_onnx_depth_resnet18_matches_jax(onnx_modules, resnet18):
  fn, jitted = resnet18
  session = export.onnx_session(export.export_onnx(fn, SHAPE))
  assert [i.name for i in session.get_inputs()] == ['rgb']
  assert session.get_inputs()[0].shape[1:] == list(SHAPE) + [3]
  assert not isinstance(session.get_inputs()[0].shape[0], int)  # dynamic batch
  for batch in (1, 2):
    rgb = _rgb(batch, seed=10 + batch)
    out = export.run_onnx(session, rgb)
    assert out.shape == (batch,) + SHAPE + (1,)
    assert np.abs(out - np.asarray(jitted(rgb))).max() <= ONNX_ATOL


class _PackNetBlocks(nn.Module):
  """PackNet's export-critical parts: packing + Conv3d + GroupNorm + ELU, unpacking + pixel shuffle."""

  @nn.compact
  def __call__(self, rgb, train=False):
    x = blocks.Conv2D(16, 5, name='pre_calc')(rgb)
    x = blocks.PackLayerConv3d(3, d=8, name='pack')(x)
    x = blocks.ResidualBlock(32, 1, 1, name='conv')(x)
    x = blocks.UnpackLayerConv3d(32, 3, d=8, name='unpack')(x)
    return blocks.InvDepth(name='disp')(x)


def test_onnx_packnet_blocks_match_jax(onnx_modules):
  net = _PackNetBlocks()
  variables = random_variables(net, jnp.zeros((1, 32, 32, 3)))
  fn = export.inference_fn(net, variables)
  data = export.export_onnx(fn, (32, 32))
  import onnx  # pylint: disable=import-outside-toplevel
  graph = onnx.load_from_string(data).graph
  convs = [n for n in graph.node if n.op_type == 'Conv']
  kernel_ranks = {len(a.ints) for n in convs for a in n.attribute if a.name == 'kernel_shape'}
  assert convs and kernel_ranks <= {2}  # the two Conv3d became 2-D convolutions
  session = export.onnx_session(data)
  rgb = _rgb(2, (32, 32), seed=3)
  assert np.abs(export.run_onnx(session, rgb) - np.asarray(jax.jit(fn)(rgb))).max() <= ONNX_ATOL


@pytest.mark.slow
def test_onnx_packnet01_matches_jax(onnx_modules):
  net = registry.build_depth_net('PackNet01', '1A')
  variables = random_variables(net, jnp.zeros((1, 64, 64, 3)))
  fn = export.inference_fn(net, variables)
  session = export.onnx_session(export.export_onnx(fn, (64, 64)))
  rgb = _rgb(2, (64, 64), seed=4)
  assert np.abs(export.run_onnx(session, rgb) - np.asarray(jax.jit(fn)(rgb))).max() <= ONNX_ATOL


# ----------------------------------------------------------------------------
# CLI.


@pytest.fixture(scope='module')
def converted_dir(tmp_path_factory, resnet18):
  from packnet_jax.convert import converter
  net = registry.build_depth_net('DepthResNet', '18')
  variables = random_variables(net, jnp.zeros((1,) + SHAPE + (3,)))
  config = {'format': converter.FORMAT, 'source': 'test', 'epoch': 0, 'model_name': 'SelfSupModel',
            'depth_net': {'name': 'DepthResNet', 'version': '18', 'weights': True}, 'pose_net': None,
            'image_shape': list(SHAPE), 'min_depth': 0.0, 'max_depth': 80.0, 'crop': '',
            'scale_output': 'resize', 'rotation_mode': 'euler', 'checkpoint_config': None}
  path = tmp_path_factory.mktemp('export') / 'model'
  converter.save_converted(converter.ConvertedModel(config=config, variables={'depth': variables},
                                                    unused_keys={}, messages=[]), str(path))
  return path, export.inference_fn(net, variables)


def test_cli_stablehlo(converted_dir, resnet18, tmp_path, capsys):
  path, _ = converted_dir
  out = tmp_path / 'depth.stablehlo'
  rc = export.main(['export', '--checkpoint', str(path), '--format', 'stablehlo', '--image_shape', '32,64',
                    '--output', str(out)])
  assert rc == 0 and 'wrote' in capsys.readouterr().out
  assert sorted(p.name for p in tmp_path.iterdir()) == ['depth.stablehlo']  # no temporary left behind
  exported = export.load_stablehlo(out.read_bytes())
  rgb = _rgb(2, seed=7)
  # Same seed-0 random weights as the `resnet18` fixture, whose jitted function is compiled already.
  np.testing.assert_allclose(exported.call(rgb), resnet18[1](rgb), atol=1e-5)


@pytest.mark.parametrize('bad,message', [
    (['--image_shape', '32x64'], 'image_shape'),
    (['--image_shape', '32,0'], 'positive'),
    (['--format', 'tflite'], 'format'),
])
def test_cli_bad_arguments(converted_dir, tmp_path, capsys, bad, message):
  path, _ = converted_dir
  argv = ['export', '--checkpoint', str(path), '--format', 'stablehlo', '--image_shape', '32,64',
          '--output', str(tmp_path / 'x')]
  for i in range(0, len(bad), 2):
    argv[argv.index(bad[i]) + 1] = bad[i + 1]
  assert export.main(argv) == cli.EXIT_ERROR
  assert message in capsys.readouterr().err
  assert not (tmp_path / 'x').exists()
