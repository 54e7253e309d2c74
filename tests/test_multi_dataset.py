"""Several datasets per split (the reference's lists): config, concatenated training, per-dataset validation, best checkpoints.

* Config: a scalar or a list, from an experiment file, the command line and config.json;
  one-element lists broadcast; other lengths are one error line naming the key.
* Data: KITTI + DDAD + an image folder concatenate into one shuffled, resumable stream whose
  epoch is their sum; samples that cannot share a batch are refused in one line.
* Training on ONE device (subprocess): KITTI + image folder batches mix both; KITTI + DDAD
  validation rows equal the eval CLI's, per prefix; `--step best` picks the best kept step.
* In-process (2 fake devices): kill and resume of a 2-dataset run is bit-identical; a run whose
  monitored metric improves then degrades keeps its best checkpoint (orbax BestN) next to the newest.
"""
import json
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from configs import default
from lib import tiny_training as train_testlib
from lib.env import single_device_env
from lib.synthetic import make_synthetic_kitti
from packnet_jax import api
from packnet_jax import config_utils
from packnet_jax.data import config as data_config
from packnet_jax.data import dataset_list
from packnet_jax.eval import report
from packnet_jax.utils import metric_names
from packnet_jax.train import train
from packnet_jax.workdir import run_files as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
KITTI_IMAGES = train_testlib.KITTI_SYNTH / '2011_09_26' / '2011_09_26_drive_0001_sync' / 'image_02' / 'data'


# ---------------------------------------------------------------------------------------------
# Config.


def test_lists_broadcast_like_the_reference():
  cfg = dict(dataset='KITTI', path=['/d/KITTI_raw'], split=['a/eigen_val_files.txt', 'a/eigen_test_files.txt'],
             depth_type=['velodyne'], input_depth_type='', cameras=(), repeat=[2])
  expanded = dataset_list.expand(cfg, 'datasets.validation')
  assert [(c['dataset'], c['path'], c['split'], c['depth_type'], c['repeat']) for c in expanded] == [
      ('KITTI', '/d/KITTI_raw', 'a/eigen_val_files.txt', 'velodyne', 2),
      ('KITTI', '/d/KITTI_raw', 'a/eigen_test_files.txt', 'velodyne', 2)]
  # The reference's prepare_dataset_prefix: path stem, split stem, depth type, the one camera.
  assert [dataset_list.prefix(c) for c in expanded] == ['KITTI_raw-eigen_val_files-velodyne',
                                                        'KITTI_raw-eigen_test_files-velodyne']
  assert dataset_list.prefix(dict(path='/d/DDAD/ddad.json', split='val', depth_type='lidar',
                                  cameras=('camera_01',))) == 'ddad-val-lidar-camera_01'
  # cameras: a flat list is one dataset's cameras (shared); a list of lists is per dataset.
  two = dict(cfg, path=['/a', '/b'], split='')
  assert [c['cameras'] for c in dataset_list.expand(dict(two, cameras=('c1', 'c5')))] == [('c1', 'c5')] * 2
  assert [c['cameras'] for c in dataset_list.expand(dict(two, cameras=(('c1',), ('c5', 'c6'))))] == [
      ('c1',), ('c5', 'c6')]
  # configs/kitti.py validates on Eigen val and Eigen test, as train_kitti.yaml.
  kitti = importlib_config('kitti')
  assert split_prefixes(kitti, 'validation') == ['KITTI_raw-eigen_val_files-velodyne',
                                                 'KITTI_raw-eigen_test_files-velodyne']
  assert split_prefixes(kitti, 'train') == ['KITTI_raw-eigen_zhou_files-velodyne']


def importlib_config(name):
  import importlib  # pylint: disable=import-outside-toplevel
  return importlib.import_module(f'configs.{name}').get_config()


def split_prefixes(config, split):
  return [dataset_list.prefix(c) for c in dataset_list.expand(config_utils.dataset_config(config, split))]


@pytest.mark.parametrize('key,value,expected', [
    ('split', ('x', 'y'), "config key 'datasets.train.split': 2 values for 3 datasets; every list must have "
                          'one value or one per dataset (lengths: path 3, split 2)'),
    ('repeat', ('2', '1', '1'), "config key 'datasets.train.repeat': expected int or a list of them, got '2'"),
    ('cameras', (('c1',), 'c5'), "config key 'datasets.train.cameras': expected camera names or one list"),
])
def test_bad_lists_are_one_config_error_naming_the_key(key, value, expected):
  config = default.get_config()
  config.datasets.train.path = ['/a', '/b', '/c']
  config.datasets.train[key] = value
  with pytest.raises(config_utils.ConfigError) as e:
    config_utils.validate_config(config)
  assert str(e.value).startswith(expected) and '\n' not in str(e.value)


def test_scalar_or_list_from_a_file_the_command_line_and_config_json():
  argv = ['prog', '--config=configs/kitti.py', '--config.datasets.train.path=/data/KITTI_raw',
          "--config.datasets.validation.path=['/data/a','/data/b']", '--config.datasets.train.repeat=3',
          "--config.datasets.test.cameras=('camera_01','camera_05')"]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  config = config_utils.validate_config(fv.config)
  assert config.datasets.train.path == '/data/KITTI_raw' and config.datasets.train.repeat == 3
  assert config.datasets.validation.path == ('/data/a', '/data/b')   # lists are stored as tuples
  assert config.datasets.validation.split == ('data_splits/eigen_val_files.txt',
                                              'data_splits/eigen_test_files.txt')
  assert config.datasets.test.cameras == ('camera_01', 'camera_05')
  restored = config_utils.from_json(config_utils.to_json(config))
  assert restored.to_dict() == config.to_dict()
  with pytest.raises(TypeError):   # the schema stays locked and typed around the list keys
    config.datasets.train.batch_size = 'four'


def test_step_flag_takes_a_number_or_best():
  from packnet_jax.eval import __main__ as eval_main  # pylint: disable=import-outside-toplevel
  assert eval_main.parse_flags(['eval', '--checkpoint=w', '--step=best']).step == 'best'
  assert eval_main.parse_flags(['eval', '--checkpoint=w', '--step=12']).step == 12
  with pytest.raises(flags.IllegalFlagValueError, match='expected a step number or "best"'):
    eval_main.parse_flags(['eval', '--checkpoint=w', '--step=last'])


def test_checkpoint_monitor_names_and_modes():
  assert metric_names.parse_monitor('abs_rel_pp_gt') == ('depth_pp_gt', 'abs_rel')
  assert metric_names.parse_monitor('sqr_rel') == ('depth', 'sq_rel')   # the reference's name
  assert metric_names.parse_monitor('a1_gt') == ('depth_gt', 'a1')
  assert (metric_names.monitor_mode('abs_rel_gt'), metric_names.monitor_mode('a1_gt'),
          metric_names.monitor_mode('a1_gt', 'min')) == ('min', 'max', 'min')
  config = importlib_config('kitti')
  config.checkpoint.monitor = 'loss'   # the reference's default: not a validation metric here
  with pytest.raises(config_utils.ConfigError, match="'checkpoint.monitor': expected <metric><mode>"):
    config_utils.validate_config(config)
  config.checkpoint.monitor, config.checkpoint.monitor_index = 'abs_rel_gt', 2
  with pytest.raises(config_utils.ConfigError, match=r"'checkpoint.monitor_index': expected in \[0, 2\)"):
    config_utils.validate_config(config)


# ---------------------------------------------------------------------------------------------
# Data: one concatenated, shuffled, resumable stream.


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
  """Synthetic KITTI and DDAD trees (the generators users run) and an image folder."""
  root = tmp_path_factory.mktemp('multi')
  make_synthetic_kitti(root / 'kitti', 12, 32, 96)   # 6 training samples + the folder's 4: 5 steps per epoch
  subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_synthetic_ddad.py'), '--output', str(root / 'ddad'),
                  '--frames', '6', '--val_frames', '3', '--height', '32', '--width', '96'],
                 check=True, capture_output=True)
  return {'kitti': root / 'kitti', 'ddad': root / 'ddad' / 'ddad.json',
          'folder': root / 'ddad' / '000000' / 'rgb' / 'CAMERA_01'}


def _three(trees):
  return dict(dataset=['KITTI', 'DGP', 'Image'], path=[str(trees['kitti']), str(trees['ddad']), str(trees['folder'])],
              split=['splits/train.txt', 'train', ''], depth_type='', input_depth_type='', cameras=('camera_01',),
              repeat=[1, 2, 1], back_context=1, forward_context=1, image_shape=(32, 96),
              jittering=(0.2, 0.2, 0.2, 0.05), shuffle=True)


def test_concatenated_stream_mixes_every_dataset_and_resumes_exactly(trees):
  cfg = _three(trees)
  source = data_config.build_source(cfg, 'train', seed=3)
  parts = [len(data_config.build_source(dict(cfg, **{k: cfg[k][i] for k in ('dataset', 'path', 'split')},
                                              repeat=cfg['repeat'][i]), 'train', seed=3)) for i in range(3)]
  assert parts[1] == 2 * len(data_config.build_source(
      dict(cfg, dataset='DGP', path=cfg['path'][1], split='train', repeat=1), 'train'))   # repeat[1] = 2
  assert len(source) == sum(parts)            # the epoch follows the concatenation
  kwargs = dict(batch_size=2, num_devices=1, seed=3, source=source, process_index=0, process_count=1)
  it = data_config.make_train_iterator(cfg, **kwargs)
  assert it.steps_per_epoch == sum(parts) // 2
  batches = [next(it) for _ in range(it.steps_per_epoch + 2)]
  epoch = np.concatenate([b['idx'].ravel() for b in batches[:it.steps_per_epoch]])
  assert len(set(epoch.tolist())) == len(epoch) == 2 * it.steps_per_epoch   # each sample at most once
  which = [[source.dataset_of(int(i)) for i in b['idx'].ravel()] for b in batches]
  assert {d for w in which for d in w} == {0, 1, 2}
  assert any(len(set(w)) > 1 for w in which)   # batches mix datasets
  # A sample's filename is its own dataset's.
  first = batches[0]
  for i, name in zip(first['idx'].ravel(), first['filename'].ravel()):
    name = name.decode()
    assert ('camera_01' in name) == (source.dataset_of(int(i)) == 1), name
  # Resuming at step s yields exactly the batches that followed step s.
  resumed = data_config.make_train_iterator(cfg, start_step=3, **kwargs)
  for expected in batches[3:]:
    got = next(resumed)
    for key in ('idx', 'rgb_original', 'intrinsics'):
      np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_datasets_that_cannot_share_a_batch_are_refused_in_one_line(trees):
  cfg = dict(_three(trees), depth_type=['velodyne', '', ''])
  with pytest.raises(ValueError) as e:
    data_config.build_source(cfg, 'train')
  message = str(e.value)
  assert message.startswith("datasets.train: samples of dataset 0 (kitti-train-velodyne-camera_01) and "
                            "dataset 1 (ddad-train-camera_01) cannot share a batch: 'depth' only in dataset 0")
  assert '\n' not in message


# ---------------------------------------------------------------------------------------------
# One device, as a user runs it: train on KITTI + an image folder, validate on KITTI + DDAD.


def _run(module, *args, cwd=ROOT, check=True):
  proc = subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=single_device_env(fast_compile=True),
                        capture_output=True, text=True, timeout=900)
  if check:
    assert proc.returncode == 0, f'{module} {args} failed:\n{proc.stderr[-3000:]}'
  return proc


def _two_dataset_args(trees, workdir):
  return [f'--config=configs/demo.py:{trees["kitti"]}', f'--workdir={workdir}',
          '--config.datasets.augmentation.image_shape=(32,96)', '--config.datasets.train.batch_size=2',
          "--config.datasets.train.dataset=['KITTI','Image']",
          f"--config.datasets.train.path=['{trees['kitti']}','{trees['folder']}']",
          "--config.datasets.train.split=['splits/train.txt','']",
          "--config.datasets.validation.dataset=['KITTI','DGP']",
          f"--config.datasets.validation.path=['{trees['kitti']}','{trees['ddad']}']",
          "--config.datasets.validation.split=['splits/val.txt','val']",
          "--config.datasets.validation.depth_type=['groundtruth','lidar']",
          '--config.datasets.validation.batch_size=2', '--config.arch.max_steps=4', '--config.eval.every_steps=2',
          '--config.checkpoint.every_steps=0', '--config.checkpoint.keep=1', '--config.checkpoint.save_top_k=1',
          '--config.checkpoint.monitor=abs_rel_gt', '--config.checkpoint.monitor_index=1',
          '--config.logging.log_every_steps=1', '--config.logging.image_every_steps=0']


def test_two_datasets_on_one_device(trees, tmp_path):
  workdir = tmp_path / 'workdir'
  proc = _run('packnet_jax.main', *_two_dataset_args(trees, workdir))
  output = proc.stdout + proc.stderr
  assert 'on 1 device(s)' in output
  # Batches provably hold samples of both datasets (the loop counts them by concatenated index).
  counts = [tuple(map(int, m)) for m in re.findall(r'step \d+ batch: (\d+) from dataset 0 .*?, (\d+) from dataset 1',
                                                   output)]
  assert len(counts) == 4 and all(a + b == 2 for a, b in counts)
  assert sum(a for a, _ in counts) > 0 and sum(b for _, b in counts) > 0, counts
  prefixes = ['kitti-val-groundtruth', 'ddad-val-lidar']
  for prefix in prefixes:
    assert re.search(rf'final evaluation \(step 4\) {prefix}: AbsRel [\d.]+', output), prefix
  logged = json.loads((workdir / 'validation.json').read_text())
  assert sorted(logged) == sorted(prefixes + ['step']) and logged['step'] == 4
  # The eval CLI reproduces every dataset's rows, one table per dataset.
  out = tmp_path / 'metrics.json'
  proc = _run('packnet_jax.eval', f'--checkpoint={workdir}', '--split=validation', f'--output={out}',
              '--noprogress', cwd=tmp_path)
  assert proc.stdout.count('== validation kitti-val-groundtruth overall:') == 1
  assert proc.stdout.count('== validation ddad-val-lidar overall:') == 1
  evaluated = json.loads(out.read_text())
  for prefix in prefixes:
    assert evaluated[prefix]['checkpoint'].endswith('(step 4)')
    assert evaluated[prefix]['num_samples'] == logged[prefix]['num_samples'] > 0
    for row in ('depth', 'depth_gt', 'depth_pp', 'depth_pp_gt', 'median_baseline_gt'):
      for name, value in logged[prefix][row].items():
        np.testing.assert_allclose(evaluated[prefix][row][name], value, rtol=1e-5, err_msg=f'{prefix} {row}/{name}')
  # Best by DDAD's median-scaled AbsRel, kept next to the newest; `--step best` finds it.
  best = int(re.search(r'best checkpoint by abs_rel_gt \(validation dataset 1\): step (\d+); kept steps', output)[1])
  kept = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())
  assert kept == sorted({best, 4})
  assert api.load_model(workdir, step='best').source.endswith(f'(step {best})')


def test_bad_lists_on_the_command_line_are_one_error_line(trees, tmp_path):
  workdir = tmp_path / 'workdir'
  args = _two_dataset_args(trees, workdir) + ["--config.datasets.train.split=['a','b','c']"]
  proc = _run('packnet_jax.main', *args, check=False)
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert errors == ["error: config key 'datasets.train.split': 3 values for 2 datasets; every list must have one "
                    'value or one per dataset (lengths: dataset 2, path 2, split 3)'], proc.stderr
  assert not workdir.exists() or not any(workdir.iterdir())


# ---------------------------------------------------------------------------------------------
# In process (2 fake devices): resume and best checkpoints.


def _two_dataset_tiny(max_steps):
  config = train_testlib.tiny_config(max_steps=max_steps)
  config.datasets.train.dataset = ['KITTI', 'Image']
  config.datasets.train.path = [str(train_testlib.KITTI_SYNTH), str(KITTI_IMAGES)]
  config.datasets.train.split = ['split.txt', '']
  return config


def _leaves(tree):
  return jax.tree_util.tree_leaves(tree)


def test_two_dataset_resume_is_bit_identical(tmp_path):
  full = train.train_and_evaluate(_two_dataset_tiny(4), tmp_path / 'full')
  train.train_and_evaluate(_two_dataset_tiny(2), tmp_path / 'split')
  resumed = train.train_and_evaluate(_two_dataset_tiny(4), tmp_path / 'split')
  assert len(resumed.history) == 2 and int(resumed.state.step) == 4
  for a, b in zip(_leaves(full.state.params), _leaves(resumed.state.params)):
    np.testing.assert_array_equal(a, b)
  assert [h['loss'] for h in full.history[2:]] == [h['loss'] for h in resumed.history]
  with pytest.raises(ValueError, match='"best" needs a run with checkpoint.monitor'):
    workdir_lib.restore_networks(tmp_path / 'full', 'best')   # no monitor: last N only


def test_best_checkpoint_of_a_run_that_improves_then_degrades(tmp_path, monkeypatch):
  """The monitored value is scripted (improves, then degrades); everything else is the real loop."""
  config = train_testlib.tiny_config(max_steps=5)
  config.datasets.validation.depth_type = ['groundtruth', 'velodyne']   # two validation datasets
  config.eval.schedule = 'steps'
  config.eval.every_steps = 1
  config.eval.max_batches = 1   # the monitored value is scripted: one batch per dataset is enough
  config.checkpoint.every_steps = 0
  config.checkpoint.keep = 1
  config.checkpoint.save_top_k = 2
  config.checkpoint.monitor = 'abs_rel_pp_gt'
  config.checkpoint.monitor_index = 1
  scripted = {1: 0.50, 2: 0.30, 3: 0.20, 4: 0.25, 5: 0.60}   # step → monitored value
  real = train.run_validation
  saved_params = {}

  def validation(config, model, host_state, writer, step, workdir):
    results = real(config, model, host_state, writer, step, workdir)
    assert sorted(results) == ['kitti_synth-split-groundtruth', 'kitti_synth-split-velodyne']
    results['kitti_synth-split-velodyne']['depth_pp_gt']['abs_rel'] = scripted[step]
    saved_params[step] = jax.device_get(host_state.params)
    return results

  monkeypatch.setattr(train, 'run_validation', validation)
  workdir = tmp_path / 'run'
  train.train_and_evaluate(config, workdir)
  kept = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())
  assert kept == [3, 4, 5]   # the 2 best (0.20, 0.25) and the newest, which a resumed run starts from
  variables, step = workdir_lib.restore_networks(workdir, 'best')
  assert step == 3
  for a, b in zip(_leaves(variables['depth']['params']), _leaves(saved_params[3]['depth_net'])):
    np.testing.assert_array_equal(a, b)
  model = api.load_model(workdir, step='best')
  assert model.source.endswith('(step 3)')
  # Resuming starts from the newest (5), not the best, and ranks against the stored values.
  config.arch.max_steps = 6
  scripted[6] = 0.10
  resumed = train.train_and_evaluate(config, workdir)
  assert len(resumed.history) == 1
  assert workdir_lib.restore_networks(workdir, 'best')[1] == 6
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit()) == [3, 6]
