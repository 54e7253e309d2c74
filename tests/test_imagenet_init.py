"""ImageNet-initialised ResNet encoders ('pt' versions) from torchvision files, without torch.

The torchvision-layout weights come from the seeded recipe of
tests/lib/imagenet_recipe.py (written here as `.pth` files with
tests/lib/torch_writer.py); the vendored tests/fixtures/imagenet/*.npz hold torch's
features for the same weights and input.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import imagenet_recipe as recipe
from lib import torch_writer
from configs import default
from packnet_jax.convert import converter
from packnet_jax.convert import torchvision_resnet
from packnet_jax.models import sfm_model
from packnet_jax.models.resnet_encoder import ResnetEncoder
from packnet_jax.train import imagenet_init
from packnet_jax.train import model_init

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'imagenet'
LEVELS = ('f0', 'f1', 'f2', 'f3', 'f4')
_SFM_INIT = sfm_model.init_variables  # Kept: one test monkeypatches the module attribute.


def load_fixture(name):
  with np.load(FIXTURES / name) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def pth(tmp_path_factory):
  """{18: zip .pth without num_batches_tracked, 50: legacy .pth with them} (torchvision's two vintages)."""
  tmp = tmp_path_factory.mktemp('imagenet')
  torch_writer.save_zip(recipe.torchvision_state_dict(18), tmp / 'resnet18-f37072fd.pth')
  torch_writer.save_legacy(recipe.torchvision_state_dict(50, num_batches_tracked=0), tmp / 'resnet50-19c8e357.pth')
  return {18: tmp / 'resnet18-f37072fd.pth', 50: tmp / 'resnet50-19c8e357.pth'}


def run_convert(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'packnet_jax.convert', *map(str, args)], capture_output=True,
                        text=True, env=env, cwd=REPO, timeout=300, check=False)


def encoder_features(num_layers, resnet_variables, rgb):
  """Our ResnetEncoder (normalisation + trunk) with the trunk's variables; [f0..f4] as numpy."""
  variables = {c: {'encoder': tree} for c, tree in resnet_variables.items()}
  features = ResnetEncoder(num_layers).apply(variables, jnp.asarray(rgb))
  return [np.asarray(f) for f in features]


# --------------------------------------------------------------------------- conversion + parity
@pytest.mark.parametrize('num_layers', [18, 50])
def test_all_five_levels_equal_torch(pth, num_layers):
  model = converter.convert_checkpoint(pth[num_layers])
  assert model.config['encoder']['num_layers'] == num_layers
  assert model.config['depth_net'] is None and model.config['pose_net'] is None
  assert model.unused_keys == {'encoder': []}  # num_batches_tracked (ResNet-50 file) counts as consumed.
  want = load_fixture(f'resnet{num_layers}.npz')
  got = encoder_features(num_layers, model.variables['encoder'], want['input'])
  channels = (64, 64, 128, 256, 512) if num_layers == 18 else (64, 256, 512, 1024, 2048)
  for level, feature, c in zip(LEVELS, got, channels):
    assert feature.shape == (1, 64 >> (int(level[1]) + 1), 64 >> (int(level[1]) + 1), c)
    np.testing.assert_allclose(feature, want[level], rtol=1e-5, atol=1e-5, err_msg=level)


def test_weights_are_the_file_bit_exactly(pth):
  state_dict = recipe.torchvision_state_dict(18)
  variables = converter.convert_checkpoint(pth[18]).variables['encoder']
  np.testing.assert_array_equal(variables['params']['conv1']['kernel'],
                                np.transpose(state_dict['conv1.weight'], (2, 3, 1, 0)))
  np.testing.assert_array_equal(variables['params']['fc']['kernel'], state_dict['fc.weight'].T)
  np.testing.assert_array_equal(variables['batch_stats']['layer4']['0']['downsample']['1']['var'],
                                state_dict['layer4.0.downsample.1.running_var'])


def test_depth_is_read_from_the_keys():
  def keys(blocks, bottleneck=False):
    out = {'conv1.weight': 0, 'layer1.0.conv1.weight': 0}
    for stage, n in enumerate(blocks, start=1):
      out.update({f'layer{stage}.{b}.conv1.weight': 0 for b in range(n)})
    if bottleneck:
      out['layer1.0.conv3.weight'] = 0
    return out
  assert torchvision_resnet.resnet_depth(keys((2, 2, 2, 2)), 'f') == 18
  assert torchvision_resnet.resnet_depth(keys((3, 4, 6, 3)), 'f') == 34
  assert torchvision_resnet.resnet_depth(keys((3, 4, 6, 3), True), 'f') == 50
  with pytest.raises(ValueError, match=r'^r101.pth: holds ResNet-101 weights; expected torchvision ResNet-18, 34 or 50'):
    torchvision_resnet.resnet_depth(keys((3, 4, 23, 3), True), 'r101.pth')


def test_unused_keys_are_reported(tmp_path):
  state_dict = recipe.torchvision_state_dict(18)
  state_dict['extra.weight'] = np.zeros(3, np.float32)
  torch_writer.save_zip(state_dict, tmp_path / 'extra.pth')
  model = converter.convert_checkpoint(tmp_path / 'extra.pth')
  assert model.unused_keys == {'encoder': ['extra.weight']}
  assert 'unused keys: extra.weight' in model.messages


def test_missing_key_is_an_error(tmp_path):
  state_dict = recipe.torchvision_state_dict(18)
  del state_dict['layer2.1.bn2.running_mean']
  torch_writer.save_zip(state_dict, tmp_path / 'holed.pth')
  with pytest.raises(ValueError, match=r'holed.pth: torchvision ResNet-18: missing required key\(s\) '
                                       r'layer2.1.bn2.running_mean$'):
    converter.convert_checkpoint(tmp_path / 'holed.pth')


# --------------------------------------------------------------------------- CLI
def test_cli_writes_an_encoder_only_directory(pth, tmp_path):
  assert len(recipe.torchvision_state_dict(18)) == 102  # torchvision resnet18 keys, no num_batches_tracked.
  result = run_convert('--checkpoint', pth[18], '--output', tmp_path / 'r18')
  assert result.returncode == 0, result.stderr
  assert "encoder: converted torchvision ResNet-18 (102 arrays) for DepthResNet / PoseResNet version '18pt'" \
      in result.stdout
  assert f'wrote {tmp_path / "r18"}' in result.stdout
  config = json.loads((tmp_path / 'r18' / converter.CONFIG_FILE).read_text())
  assert config['encoder'] == {'name': 'ResNet', 'num_layers': 18, 'weights': 'torchvision ImageNet'}
  assert config['source'] == 'resnet18-f37072fd.pth'
  stored = converter.load_converted(tmp_path / 'r18').variables
  jax.tree_util.tree_map(np.testing.assert_array_equal, dict(stored['encoder']),
                         converter.convert_checkpoint(pth[18]).variables['encoder'])
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.')]  # No temp dir left behind.


def _assert_one_line_error(result, out, *parts):
  assert result.returncode == 1, result.stdout
  assert result.stderr.startswith('error: ') and result.stderr.count('\n') == 1, result.stderr
  assert 'Traceback' not in result.stderr
  for part in parts:
    assert part in result.stderr, result.stderr
  assert not out.exists()


def test_cli_not_a_resnet(tmp_path):
  # A VGG-style torchvision state dict: features.N / classifier.N.
  rng = np.random.RandomState(0)
  vgg = {'features.0.weight': rng.rand(8, 3, 3, 3).astype(np.float32), 'features.0.bias': np.zeros(8, np.float32),
         'classifier.0.weight': rng.rand(10, 8).astype(np.float32)}
  torch_writer.save_zip(vgg, tmp_path / 'vgg11-8a719046.pth')
  result = run_convert('--checkpoint', tmp_path / 'vgg11-8a719046.pth', '--output', tmp_path / 'out')
  _assert_one_line_error(result, tmp_path / 'out', 'vgg11-8a719046.pth', 'unknown architecture',
                         'torchvision ResNet state dict', "first key 'features.0.weight'")


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_cli_truncated_pth(pth, tmp_path, fmt):
  source = pth[18] if fmt == 'zip' else pth[50]
  data = source.read_bytes()
  cut = tmp_path / f'cut_{fmt}.pth'
  cut.write_bytes(data[:len(data) // 2] if fmt == 'zip' else data[:len(data) - 1000])
  result = run_convert('--checkpoint', cut, '--output', tmp_path / 'out')
  expected = 'truncated or damaged zip archive' if fmt == 'zip' else 'truncated'
  _assert_one_line_error(result, tmp_path / 'out', f'cut_{fmt}.pth', expected)


# --------------------------------------------------------------------------- training init
def _config(depth_version='18pt', pose_version='18pt', depth_file='', pose_file=''):
  config = default.get_config()
  config.model.depth_net.update(name='DepthResNet', version=depth_version, pretrained_encoder=str(depth_file))
  config.model.pose_net.update(name='PoseResNet', version=pose_version, pretrained_encoder=str(pose_file))
  return config


def _seeded_init(model, rng, image_shape, num_context=2, batch_size=1):
  """Stands in for sfm_model.init_variables: the same tree (eval_shape), seeded values, no eager init.

  An eager init of two ResNets takes minutes on a busy 2-core machine; the
  ImageNet step only needs the tree and distinct values.
  """
  shapes = jax.eval_shape(lambda: _SFM_INIT(model, rng, image_shape, num_context, batch_size))
  values = np.random.RandomState(0)
  return jax.tree_util.tree_map(lambda s: values.standard_normal(s.shape).astype(s.dtype), shapes)


@pytest.fixture(scope='module')
def fresh_variables():
  """Freshly initialised SfmModel variables (DepthResNet18 + PoseResNet18, 2 contexts, 64×64)."""
  config = _config(depth_version='18', pose_version='18')
  variables = _seeded_init(model_init.build_model(config), jax.random.PRNGKey(0), (64, 64))
  return {'params': variables['params'], 'batch_stats': variables['batch_stats']}


def _copy(tree):
  return jax.tree_util.tree_map(np.array, tree)


@pytest.fixture(scope='module')
def r18_dir(pth, tmp_path_factory):
  out = tmp_path_factory.mktemp('converted') / 'r18'
  converter.save_converted(converter.convert_checkpoint(pth[18]), out)
  return out


def test_depth_and_pose_encoders_get_imagenet_weights(pth, r18_dir, fresh_variables):
  """Depth from the .pth, pose from its converted directory; everything else untouched."""
  variables = imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config(depth_file=pth[18],
                                                                                    pose_file=r18_dir))
  imagenet = converter.convert_checkpoint(pth[18]).variables['encoder']
  depth = {c: variables[c]['depth_net']['encoder']['encoder'] for c in ('params', 'batch_stats')}
  jax.tree_util.tree_map(np.testing.assert_array_equal, depth, imagenet)
  pose = {c: variables[c]['pose_net']['encoder']['encoder'] for c in ('params', 'batch_stats')}
  # Closed form of the reference's multi-image conv: torch.cat([w] * 2, dim=1) / 2, in HWIO.
  w = recipe.torchvision_state_dict(18)['conv1.weight']
  want_conv1 = np.transpose(np.concatenate([w, w], axis=1) / 2, (2, 3, 1, 0))
  np.testing.assert_array_equal(pose['params']['conv1']['kernel'], want_conv1)
  assert pose['params']['conv1']['kernel'].shape == (7, 7, 6, 64)
  pose['params'].pop('conv1')
  imagenet_rest = dict(imagenet, params={k: v for k, v in imagenet['params'].items() if k != 'conv1'})
  jax.tree_util.tree_map(np.testing.assert_array_equal, pose, imagenet_rest)
  for net in ('depth_net', 'pose_net'):  # Decoders keep their random init.
    jax.tree_util.tree_map(np.testing.assert_array_equal, variables['params'][net]['decoder'],
                           fresh_variables['params'][net]['decoder'])


def test_pose_encoder_equals_reference_multi_image_construction(pth, fresh_variables):
  """PoseResNet's 6-channel encoder on cat[target, context] = torch's resnet_multiimage_input, 1e-5."""
  variables = imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config(depth_file=pth[18],
                                                                                    pose_file=pth[18]))
  pose = {c: variables[c]['pose_net']['encoder']['encoder'] for c in ('params', 'batch_stats')}
  want = load_fixture('resnet18_pose.npz')
  got = encoder_features(18, pose, np.concatenate([want['target'], want['context']], axis=-1))
  for level, feature in zip(LEVELS, got):
    np.testing.assert_allclose(feature, want[level], rtol=1e-5, atol=1e-5, err_msg=level)
  # Two copies of one image give exactly the 3-channel ImageNet response (kernel halves sum back).
  single = load_fixture('resnet18.npz')
  twice = encoder_features(18, pose, np.concatenate([single['input']] * 2, axis=-1))
  np.testing.assert_allclose(twice[4], single['f4'], rtol=1e-5, atol=1e-5)


def test_tile_first_conv_closed_form():
  kernel = np.arange(7 * 7 * 3 * 2, dtype=np.float32).reshape(7, 7, 3, 2)
  tiled = imagenet_init.tile_first_conv(kernel, 9)
  assert tiled.shape == (7, 7, 9, 2)
  for i in range(3):
    np.testing.assert_array_equal(tiled[:, :, 3 * i:3 * i + 3], kernel / 3)
  with pytest.raises(ValueError, match='multiple of 3'):
    imagenet_init.tile_first_conv(kernel, 4)


def test_init_variables_applies_the_file(pth, fresh_variables, monkeypatch):
  """model_init.init_variables (the training entry) runs the ImageNet step after the random init."""
  monkeypatch.setattr(sfm_model, 'init_variables', _seeded_init)
  config = _config(depth_file=pth[18], pose_version='18')
  variables = model_init.init_variables(model_init.build_model(config), config, jax.random.PRNGKey(0), (64, 64))
  kernel = variables['params']['depth_net']['encoder']['encoder']['conv1']['kernel']
  np.testing.assert_array_equal(kernel, np.transpose(recipe.torchvision_state_dict(18)['conv1.weight'],
                                                     (2, 3, 1, 0)))
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables['params']['pose_net'],
                         fresh_variables['params']['pose_net'])


# --------------------------------------------------------------------------- refusals
def test_pt_without_file_names_the_file_to_bring(fresh_variables):
  with pytest.raises(ValueError) as info:
    imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config())
  message = str(info.value)
  assert message.startswith("config key 'model.depth_net.pretrained_encoder': DepthResNet version '18pt' needs "
                            "torchvision's ImageNet weights resnet18-f37072fd.pth "
                            "(https://download.pytorch.org/models/resnet18-f37072fd.pth)")
  assert '\n' not in message and '--config.model.depth_net.pretrained_encoder=PATH' in message


def test_pt_pose_without_file_is_refused_too(pth, fresh_variables):
  with pytest.raises(ValueError, match="^config key 'model.pose_net.pretrained_encoder': PoseResNet version "
                                       "'18pt' needs torchvision's ImageNet weights resnet18-f37072fd.pth"):
    imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config(depth_file=pth[18]))


@pytest.mark.parametrize('key', ['model.checkpoint_path', 'model.depth_net.checkpoint_path'])
def test_pt_without_file_is_fine_when_a_checkpoint_supplies_the_net(fresh_variables, key):
  config = _config(pose_version='18')
  node, leaf = key.rsplit('.', 1)
  target = config.model if node == 'model' else config.model.depth_net
  target[leaf] = 'released.ckpt'  # Read later by load_pretrained, not here.
  variables = imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), config)
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables, fresh_variables)


def test_wrong_depth_names_the_file_and_both_depths(pth, fresh_variables):
  with pytest.raises(ValueError) as info:
    imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config(depth_file=pth[50], pose_version='18'))
  assert str(info.value) == (f"{pth[50]}: holds ResNet-50 ImageNet weights, but model.depth_net version '18pt' "
                             'needs ResNet-18 (resnet18-f37072fd.pth)')


def test_file_for_a_version_without_pt_is_refused(pth, fresh_variables):
  with pytest.raises(ValueError, match=r"^config key 'model.depth_net.pretrained_encoder': set to .*resnet18-"
                                       r"f37072fd.pth, but DepthResNet version '18' takes no ImageNet encoder"):
    imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config(depth_version='18', pose_version='18',
                                                                          depth_file=pth[18]))


def test_full_network_checkpoint_is_not_an_encoder(tmp_path, fresh_variables):
  ckpt = torch_writer.recipe_checkpoint(tmp_path / 'full.ckpt', pose=None, fmt='zip')
  with pytest.raises(ValueError, match=r'full.ckpt: not ImageNet encoder weights \(expected torchvision'):
    imagenet_init.apply_imagenet_encoders(_copy(fresh_variables), _config(depth_file=ckpt, pose_version='18'))
