"""Experiment configs load, validate, override from the command line, and fail in one line."""
import importlib
import json
import pathlib
import subprocess
import sys

import pytest

from configs import default
from packnet_jax import config_utils

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / 'configs').glob('*.py') if p.stem not in ('__init__',))


def test_every_experiment_config_is_listed():
  assert set(CONFIGS) >= {'default', 'kitti', 'kitti_resnet18', 'kitti_semisup', 'kitti_velsup', 'ddad',
                          'folder', 'overfit_kitti', 'overfit_ddad', 'demo'}


@pytest.mark.parametrize('name', CONFIGS)
def test_config_validates_and_documents_its_command(name):
  module = importlib.import_module(f'configs.{name}')
  assert '--config=configs/' in module.__doc__ or name == 'default'
  config = module.get_config()
  config_utils.validate_config(config)


def test_reference_defaults():
  config = default.get_config()
  assert config.arch.seed == 42 and config.arch.max_epochs == 50
  assert (config.optim.depth.lr, config.optim.pose.lr) == (2e-4, 2e-4)
  assert (config.optim.scheduler.step_size, config.optim.scheduler.gamma) == (10, 0.5)
  loss = config.model.loss
  assert (loss.smooth_loss_weight, loss.photometric_reduce_op, loss.clip_loss, loss.automask_loss) == (
      0.001, 'min', 0.0, True)
  assert (loss.supervised_loss_weight, loss.velocity_loss_weight, loss.flip_lr_prob) == (0.9, 0.1, 0.5)
  assert config.datasets.train.batch_size == 8 and config.datasets.validation.batch_size == 1
  assert tuple(config.datasets.augmentation.jittering) == (0.2, 0.2, 0.2, 0.05)
  assert config.eval.schedule == 'epoch'   # the reference validates after every epoch


def test_variants_override_only_what_differs():
  kitti = importlib.import_module('configs.kitti').get_config()
  semi = importlib.import_module('configs.kitti_semisup').get_config()
  vel = importlib.import_module('configs.kitti_velsup').get_config()
  assert kitti.model.depth_net.name == 'PackNet01' and tuple(kitti.datasets.augmentation.image_shape) == (
      192, 640)
  assert semi.model.name == 'SemiSupModel' and semi.model.loss.supervised_loss_weight == 0.9
  assert semi.model.loss.supervised_method == 'reprojected'
  assert vel.model.name == 'VelSupModel' and vel.model.loss.velocity_loss_weight == 0.1
  assert semi.optim.to_dict() == kitti.optim.to_dict()


@pytest.mark.parametrize('mutate,key', [
    (lambda c: setattr(c.optim, 'lrr', 1e-4), 'lrr'),
    (lambda c: c.model.loss.__setitem__('ssim_weight', 0.5), 'ssim_weight'),
    (lambda c: c.update({'arch': {'max_epoch': 3}}), 'max_epoch'),
])
def test_locked_schema_rejects_unknown_keys(mutate, key):
  """ml_collections itself refuses keys that configs/default.py does not declare."""
  config = importlib.import_module('configs.demo').get_config()
  with pytest.raises((AttributeError, KeyError)) as info:
    mutate(config)
  assert key in str(info.value)


def test_locked_schema_rejects_wrong_types():
  config = importlib.import_module('configs.demo').get_config()
  with pytest.raises(TypeError, match='max_epochs'):
    config.arch.max_epochs = 'ten'
  config.optim.depth.lr = 1   # an int for a float is fine
  assert isinstance(config.optim.depth.lr, float)


@pytest.mark.parametrize('mutate,message', [
    (lambda c: c.model.__setitem__('name', 'SupModel'), "config key 'model.name': expected one of"),
    (lambda c: c.model.__setitem__('remat', 'some'), "config key 'model.remat': expected one of"),
    (lambda c: c.datasets.augmentation.__setitem__('image_shape', (100, 320)),
     "config key 'datasets.augmentation.image_shape': expected (H, W) with multiples of 32"),
    (lambda c: c.datasets.train.__setitem__('batch_size', 0),
     "config key 'datasets.train.batch_size': expected >= 1, got 0"),
    (lambda c: c.eval.__setitem__('schedule', 'never'), "config key 'eval.schedule': expected one of"),
    (lambda c: c.eval.__setitem__('every_steps', 0),   # the demo validates on a 'steps' schedule
     "config key 'eval.every_steps': expected >= 1 with eval.schedule 'steps', got 0"),
])
def test_config_value_errors_name_the_key(mutate, message):
  config = importlib.import_module('configs.demo').get_config()
  mutate(config)
  with pytest.raises(config_utils.ConfigError) as info:
    config_utils.validate_config(config)
  text = str(info.value)
  assert message in text and '\n' not in text


def test_json_round_trip_restores_the_config():
  config = importlib.import_module('configs.kitti_semisup').get_config()
  restored = config_utils.from_json(config_utils.to_json(config))
  assert restored.to_dict() == config.to_dict()
  assert isinstance(restored.datasets.augmentation.image_shape, tuple)
  with pytest.raises(config_utils.ConfigError, match='does not match'):
    config_utils.from_json('{"optim": {"lrr": 1}}', source='w/config.json')


def test_json_of_an_older_workdir_with_a_retired_key_loads():
  """A workdir written while train.inject_nonfinite_steps existed still evaluates and resumes."""
  config = importlib.import_module('configs.demo').get_config()
  old = json.loads(config_utils.to_json(config))
  old['train']['inject_nonfinite_steps'] = []
  assert config_utils.from_json(json.dumps(old)).to_dict() == config.to_dict()
  old['train']['inject_nonfinite_stepz'] = []
  with pytest.raises(config_utils.ConfigError, match='does not match'):
    config_utils.from_json(json.dumps(old), source='w/config.json')


def test_dataset_config_merges_augmentation_and_split():
  config = importlib.import_module('configs.kitti_velsup').get_config()
  train_cfg = config_utils.dataset_config(config, 'train')
  val_cfg = config_utils.dataset_config(config, 'validation')
  assert train_cfg['with_pose'] and not val_cfg['with_pose']
  assert train_cfg['image_shape'] == config.datasets.augmentation.image_shape
  assert (val_cfg['back_context'], val_cfg['forward_context']) == (0, 0)
  assert train_cfg['shuffle'] and not val_cfg['shuffle']


def _main(*args):
  return subprocess.run([sys.executable, '-m', 'packnet_jax.main', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def test_cli_rejects_unknown_override_key(tmp_path):
  proc = _main('--config=configs/demo.py', f'--workdir={tmp_path}', '--config.optim.lrr=1e-4')
  assert proc.returncode != 0
  assert 'lrr' in proc.stderr
  assert not any(tmp_path.iterdir())


def test_cli_rejects_wrong_override_type(tmp_path):
  proc = _main('--config=configs/demo.py', f'--workdir={tmp_path}', '--config.arch.max_epochs=ten')
  assert proc.returncode != 0
  assert 'max_epochs' in proc.stderr
  assert not any(tmp_path.iterdir())


def test_cli_reports_invalid_value_in_one_line(tmp_path):
  proc = _main('--config=configs/demo.py', f'--workdir={tmp_path}', '--config.model.name=SupModel')
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config key 'model.name': expected one of")
  assert 'Traceback' not in proc.stderr
  assert not any(tmp_path.iterdir())
