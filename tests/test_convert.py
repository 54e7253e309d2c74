"""Checkpoint conversion (CLI + load_model) against the recipe fixtures, without torch."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from lib import torch_writer
from lib.fixtures import FIXTURES, load_npz, nchw_to_nhwc
import packnet_jax
from packnet_jax.convert import checkpoint as checkpoint_lib
from packnet_jax.convert import converter, keymap
from packnet_jax.eval.metrics import post_process_inv_depth

REPO = pathlib.Path(__file__).resolve().parents[1]
POSEONLY = FIXTURES / 'ckpt' / 'selfsup_resnet18_posenet_POSEONLY.ckpt'
# Runs the CLI in a fresh interpreter where `import torch` / `import yacs` fail.
_NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['yacs'] = None; "
             "from packnet_jax.convert.__main__ import main; rc = main(sys.argv); "
             "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]; "
             "sys.exit(rc)")


def run_convert(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-c', _NO_TORCH, *map(str, args)], capture_output=True, text=True,
                        env=env, cwd=REPO, timeout=300, check=False)


def _pose_inputs():
  data = load_npz('net_PoseNet.npz')
  # input_context is [N,B,3,H,W] (a list of N context batches) → [B,N,H,W,3].
  return nchw_to_nhwc(data['input_rgb']), np.moveaxis(nchw_to_nhwc(data['input_context']), 0, 1), data


@pytest.fixture(scope='module')
def poseonly_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('poseonly') / 'model'
  result = run_convert('--checkpoint', POSEONLY, '--output', out)
  assert result.returncode == 0, result.stderr
  return out, result.stdout


def test_poseonly_cli_reports_missing_depth_net(poseonly_dir):
  out, stdout = poseonly_dir
  assert 'depth_net: no weights in checkpoint' in stdout
  assert "pose_net: converted PoseNet ''" in stdout
  config = json.loads((out / converter.CONFIG_FILE).read_text())
  assert config['depth_net'] == {'name': 'DepthResNet', 'version': '18', 'dropout': 0.0, 'weights': False}
  assert config['pose_net']['name'] == 'PoseNet' and config['pose_net']['weights'] is True
  assert config['image_shape'] == [192, 640] and config['crop'] == 'garg' and config['max_depth'] == 80.0
  assert config['epoch'] == 0 and config['checkpoint_config']['model']['name'] == 'SelfSupModel'
  assert not [p for p in os.listdir(out.parent) if p.startswith('.')]  # No temp dir left behind.


def test_poseonly_weights_are_the_recipe_bit_exactly(poseonly_dir):
  out, _ = poseonly_dir
  stored = converter.load_converted(out).variables
  assert set(stored) == {'pose'}
  pose_keys = {k[len('model.pose_net.'):]: v for k, v in checkpoint_lib.read_checkpoint(POSEONLY).state_dict.items()}
  recipe_sd = torch_writer.recipe_networks('PoseNet')['PoseNet']
  assert {k: v.shape for k, v in pose_keys.items()} == {k: v.shape for k, v in recipe_sd.items()}
  net = converter.build_network('pose', {'name': 'PoseNet'})
  want, missing, unused = keymap.torch_state_dict_to_variables(
      recipe_sd, converter.template_variables('pose', net, {}))
  assert not missing and not unused
  jax.tree_util.tree_map(np.testing.assert_array_equal, stored['pose'], want)


@pytest.mark.parametrize('source', ['ckpt', 'dir'])
def test_poseonly_load_model_predicts_pose_without_torch(poseonly_dir, source, monkeypatch):
  # Any `import torch` / `import yacs` from here on raises ImportError, whatever other tests in this
  # worker process imported before.
  monkeypatch.setitem(sys.modules, 'torch', None)
  monkeypatch.setitem(sys.modules, 'yacs', None)
  path = POSEONLY if source == 'ckpt' else poseonly_dir[0]
  model = packnet_jax.load_model(path)
  target, contexts, data = _pose_inputs()
  pose = model.predict_pose(target, contexts)
  assert pose.shape == (2, 2, 6) and pose.dtype == np.float32
  np.testing.assert_allclose(np.asarray(pose), data['pose_vec'], rtol=0, atol=1e-6)
  with pytest.raises(ValueError, match='no depth_net weights'):
    model.predict_inv_depth(target[:, :64, :64])
  assert model.image_shape == (192, 640)


@pytest.fixture(scope='module')
def full_model(tmp_path_factory):
  """DepthResNet18 + PoseNet recipe weights in a legacy-format .ckpt, converted with the CLI."""
  tmp = tmp_path_factory.mktemp('full')
  ckpt = torch_writer.recipe_checkpoint(tmp / 'full.ckpt', fmt='legacy')
  result = run_convert('--checkpoint', ckpt, '--output', tmp / 'model')
  assert result.returncode == 0, result.stderr
  return tmp / 'model', result.stdout


def test_full_legacy_checkpoint_depth_matches_fixture(full_model):
  out, stdout = full_model
  assert "depth_net: converted DepthResNet '18'" in stdout
  model = packnet_jax.load_model(out)
  assert model.config['epoch'] == 7 and model.image_shape == (64, 192)
  data = load_npz('net_DepthResNet18.npz')
  images = nchw_to_nhwc(data['input_rgb'])
  inv_depth = model.predict_inv_depth(images)
  assert inv_depth.shape == (2, 64, 192, 1) and inv_depth.dtype == np.float32
  np.testing.assert_allclose(np.asarray(inv_depth), nchw_to_nhwc(data['eval_inv_depth']), rtol=0, atol=1e-4)
  target, contexts, pose_data = _pose_inputs()
  np.testing.assert_allclose(np.asarray(model.predict_pose(target, contexts)), pose_data['pose_vec'],
                             rtol=0, atol=1e-6)
  # flip_pp = post-processing of the predictions on the image and on its mirror.
  fused = model.predict_inv_depth(images, flip_pp=True)
  want = post_process_inv_depth(inv_depth, model.predict_inv_depth(images[:, :, ::-1]))
  np.testing.assert_allclose(np.asarray(fused), np.asarray(want), rtol=1e-5, atol=1e-6)  # batch 4 vs 2


def test_zip_plain_and_pth_tar_layouts(tmp_path):
  """Zip format; bare network-level state dict (architecture from keys); old .pth.tar names."""
  pose_sd = torch_writer.recipe_networks('PoseNet')['PoseNet']
  torch_writer.save_zip(dict(pose_sd), tmp_path / 'plain.pth')
  old = {'pose_network.' + k: v for k, v in pose_sd.items()}
  torch_writer.save_zip({'state_dict': old}, tmp_path / 'old.pth.tar')
  target, contexts, data = _pose_inputs()
  for name in ('plain.pth', 'old.pth.tar'):
    model = packnet_jax.load_model(tmp_path / name)
    assert model.depth_net is None and model.config['pose_net']['name'] == 'PoseNet'
    np.testing.assert_allclose(np.asarray(model.predict_pose(target, contexts)), data['pose_vec'], atol=1e-6)


def test_pth_tar_renames():
  renamed = checkpoint_lib.backwards_state_dict({
      'disp_network.conv3.0.weight': 1, 'disp_network.iconv1.conv3.0.bias': 2,
      'pose_network.conv3.0.weight': 3, 'model.x': 4})
  assert renamed == {'model.depth_net.conv3.weight': 1, 'model.depth_net.iconv1.conv3.bias': 2,
                     'model.pose_net.conv3.0.weight': 3, 'model.x': 4}


@pytest.mark.parametrize('sd, kind, name, version', [
    ('DepthResNet18', 'depth', 'DepthResNet', '18'), ('DepthResNet50', 'depth', 'DepthResNet', '50'),
    ('PackNet01_1A', 'depth', 'PackNet01', '1A'), ('PackNet01_1B', 'depth', 'PackNet01', '1B'),
    ('PackNetSlim01_1A', 'depth', 'PackNetSlim01', '1A'), ('PoseNet', 'pose', 'PoseNet', ''),
    ('PoseResNet18', 'pose', 'PoseResNet', '18')])
def test_architecture_detection_from_keys(sd, kind, name, version):
  from lib.fixtures import load_json  # pylint: disable=import-outside-toplevel
  shapes = {e['key']: np.broadcast_to(np.float32(0), e['shape'])
            for e in load_json(f'net_{sd}.json')['state_dict']}
  assert checkpoint_lib.detect_from_keys(shapes) == (kind, {'name': name, 'version': version})


def test_missing_required_key_is_an_error(tmp_path):
  ckpt = torch_writer.recipe_checkpoint(tmp_path / 'broken.ckpt', depth=None, fmt='zip',
                                        drop=('model.pose_net.conv4.1.weight',))
  result = run_convert('--checkpoint', ckpt, '--output', tmp_path / 'out')
  assert result.returncode == 1
  assert result.stderr.startswith('error: ') and result.stderr.count('\n') == 1
  assert 'missing required key(s) conv4.1.weight' in result.stderr
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('case, pattern', [
    ('unknown_name', r"unknown architecture 'FooNet' \(model.pose_net.name\); expected one of \['PoseNet', "),
    ('unknown_keys', 'unknown architecture'),
    ('config_mismatch', "model.pose_net says PoseResNet '18' but its weights look like PoseNet"),
    ('no_state_dict', 'no state_dict in checkpoint'),
    ('not_a_file', 'not found'),
])
def test_bad_checkpoints_give_one_line_errors(tmp_path, case, pattern):
  path = tmp_path / 'bad.ckpt'
  pose_sd = torch_writer.recipe_networks('PoseNet')['PoseNet']
  if case in ('unknown_name', 'config_mismatch'):
    pose_net = 'FooNet' if case == 'unknown_name' else 'PoseResNet'
    config = {'model': {'pose_net': {'name': pose_net, 'version': '18'}}}
    torch_writer.save_zip({'config': config, 'state_dict': {'model.pose_net.' + k: v for k, v in pose_sd.items()}},
                          path)
  elif case == 'unknown_keys':
    torch_writer.save_zip({'state_dict': {'model.something.weight': np.ones(3, np.float32)}}, path)
  elif case == 'no_state_dict':
    torch_writer.save_zip({'epoch': 3}, path)
  with pytest.raises(ValueError, match=pattern) as err:
    packnet_jax.load_model(path)
  assert '\n' not in str(err.value)


def test_existing_output_needs_overwrite(tmp_path, poseonly_dir):
  out = tmp_path / 'model'
  out.mkdir()
  (out / 'keep.txt').write_text('x')
  model = converter.convert_checkpoint(POSEONLY)
  with pytest.raises(ValueError, match='output already exists'):
    converter.save_converted(model, out)
  converter.save_converted(model, out, overwrite=True)
  assert sorted(os.listdir(out)) == [converter.CONFIG_FILE, converter.VARIABLES_DIR]
  assert sorted(os.listdir(tmp_path)) == ['model']
