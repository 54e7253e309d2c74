"""Bad input table: every CLI refuses bad input with one line and writes nothing.

Each case builds a broken input in a temporary folder, runs the real command
line (`python -m packnet_jax.<cli>`) in a subprocess and checks that

* the exit status is not 0,
* stderr has no Python traceback (no 'Traceback', no 'File "...", line N'),
* one stderr line names the offending file/key and what was expected,
* no file was written under the output folder (it may exist, empty),
* (forbidden pickle global) the payload never ran: its marker file is absent.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from lib.env import with_fast_compile
from lib import torch_writer

REPO = pathlib.Path(__file__).resolve().parents[1]
KITTI_SYNTH = pathlib.Path(__file__).parent / 'fixtures' / 'reference' / 'kitti_synth'
DRIVE = '2011_09_26/2011_09_26_drive_0001_sync'
H, W = 64, 96
TIMEOUT_S = 300


def run_cli(module, args, timeout=TIMEOUT_S):
  """Runs `python -m module args` from the repository root (CPU only).

  XLA compiles without its expensive optimisations (lib.env.FAST_COMPILE_FLAGS):
  what is checked is the refusal, never a compiled program's speed.
  """
  env = with_fast_compile(dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
                               TF_ENABLE_ONEDNN_OPTS='0'))
  return subprocess.run([sys.executable, '-m', module, *map(str, args)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
  """A valid depth-only .ckpt (DepthResNet18, recipe weights, stored shape 64×192)."""
  path = tmp_path_factory.mktemp('bad_input_ckpt') / 'depth.ckpt'
  return torch_writer.recipe_checkpoint(path, pose=None, fmt='zip')


# --------------------------------------------------------------------------- builders
def _image(path, mode='RGB', size=(W, H)):
  path.parent.mkdir(parents=True, exist_ok=True)
  array = np.random.RandomState(0).randint(0, 256, (size[1], size[0], 3)).astype(np.uint8)
  Image.fromarray(array).convert(mode).save(path)
  return path


def _kitti_copy(tmp):
  root = tmp / 'kitti'
  shutil.copytree(KITTI_SYNTH, root)
  return root


def _main(tmp, *overrides, config='configs/demo.py'):
  """A tiny `packnet_jax.main` run (vendored kitti_synth, 32×96, batch 1); workdir = tmp/out.

  `overrides` ('--config.key=value') replace the defaults with the same key.
  """
  flags = {'arch.max_steps': '2', 'datasets.train.path': str(KITTI_SYNTH), 'datasets.train.split': 'split.txt',
           'datasets.validation.path': '', 'datasets.augmentation.image_shape': '(32, 96)',
           'datasets.train.batch_size': '1'}
  for item in overrides:
    key, value = item[len('--config.'):].split('=', 1)
    flags[key] = value
  return ('packnet_jax.main', [f'--config={config}', f'--workdir={tmp / "out"}',
                               *(f'--config.{k}={v}' for k, v in flags.items())])


def _infer(tmp, ckpt, inputs, *extra):
  return ('packnet_jax.infer', ['--checkpoint', ckpt, '--input', inputs, '--output', tmp / 'out', '--quiet',
                                *(extra or ('--image_shape', f'{H},{W}'))])


def _convert(tmp, ckpt_path):
  return ('packnet_jax.convert', ['--checkpoint', ckpt_path, '--output', tmp / 'out'])


def _train_data(root, split):
  """Overrides pointing the demo's train split at `root`/`split` (KITTI layout)."""
  return (f'--config.datasets.train.path={root}', f'--config.datasets.train.split={split}')


def case_missing_dataset_root(tmp, ckpt):
  return _main(tmp, *_train_data(tmp / 'no_such_root', 'split.txt')), ['no_such_root', 'not found']


def case_split_line_missing_image(tmp, ckpt):
  root = _kitti_copy(tmp)
  (root / 'bad_split.txt').write_text(f'{DRIVE}/image_02/data/0000000099.png\n')
  return (_main(tmp, *_train_data(root, 'bad_split.txt')),
          ['bad_split.txt:1', '0000000099.png', 'not found'])


def case_truncated_png(tmp, ckpt):
  image = _image(tmp / 'in' / 'trunc.png')
  image.write_bytes(image.read_bytes()[:200])
  return _infer(tmp, ckpt, tmp / 'in'), ['trunc.png', 'cannot decode image']


def case_truncated_png_in_training_data(tmp, ckpt):
  root = _kitti_copy(tmp)
  for image in (root / DRIVE / 'image_02' / 'data').glob('*.png'):
    image.write_bytes(image.read_bytes()[:300])
  return _main(tmp, *_train_data(root, 'split.txt')), ['image_02', '.png', 'cannot decode image']


def case_grayscale_image(tmp, ckpt):
  _image(tmp / 'in' / 'gray.png', mode='L')
  return _infer(tmp, ckpt, tmp / 'in'), ['gray.png', "expected RGB image, got mode 'L'"]


def case_rgba_image(tmp, ckpt):
  _image(tmp / 'in' / 'rgba.png', mode='RGBA')
  return _infer(tmp, ckpt, tmp / 'in'), ['rgba.png', "expected RGB image, got mode 'RGBA'"]


def case_image_shape_not_multiple_of_32(tmp, ckpt):
  _image(tmp / 'in' / 'ok.png')
  return _infer(tmp, ckpt, tmp / 'in', '--image_shape', '50,70'), ['--image_shape', 'multiples of 32']


def case_config_image_shape_not_multiple_of_32(tmp, ckpt):
  return (_main(tmp, '--config.datasets.augmentation.image_shape=(50, 70)'),
          ['datasets.augmentation.image_shape', 'multiples of 32'])


def case_export_image_shape_not_multiple_of_32(tmp, ckpt):
  return (('packnet_jax.export', ['--checkpoint', ckpt, '--format', 'stablehlo', '--image_shape', '50,70',
                                  '--output', tmp / 'out' / 'model.stablehlo']),
          ['multiples of 32', '50'])


def case_empty_image_folder(tmp, ckpt):
  (tmp / 'in').mkdir()
  return _infer(tmp, ckpt, tmp / 'in'), [str(tmp / 'in'), 'no images']


def case_undecodable_video(tmp, ckpt):
  video = tmp / 'broken.mp4'
  video.write_bytes(np.random.RandomState(1).bytes(4000))
  return _infer(tmp, ckpt, video), ['broken.mp4', 'cannot decode video']


def case_unknown_config_key(tmp, ckpt):
  return _main(tmp, '--config.optim.depth.lrr=0.1'), ['optim.depth.lrr']


def case_unknown_config_key_in_file(tmp, ckpt):
  config = tmp / 'typo_config.py'
  config.write_text('from configs import demo\n\n\ndef get_config():\n  config = demo.get_config()\n'
                    '  config.optim.depht = dict(lr=1e-4)\n  return config\n')
  return _main(tmp, config=config), ['optim.depht', 'unknown']


def case_wrong_config_value_type(tmp, ckpt):
  config = tmp / 'type_config.py'
  config.write_text('from configs import demo\n\n\ndef get_config():\n  config = demo.get_config()\n'
                    "  config.arch.seed = 'forty-two'\n  return config\n")
  return _main(tmp, config=config), ['type_config.py', "'seed'", 'int', 'str']


def case_wrong_config_value_type_on_command_line(tmp, ckpt):
  return _main(tmp, '--config.arch.max_epochs=ten'), ['arch.max_epochs', 'ten']


def case_ckpt_random_bytes(tmp, ckpt):
  path = tmp / 'random.ckpt'
  path.write_bytes(np.random.RandomState(2).bytes(4096))
  return _convert(tmp, path), ['random.ckpt']


def case_ckpt_empty_file(tmp, ckpt):
  path = tmp / 'empty.ckpt'
  path.write_bytes(b'')
  _image(tmp / 'in' / 'ok.png')
  return _infer(tmp, path, tmp / 'in'), ['empty.ckpt', 'empty']


def case_ckpt_zip_without_data_pkl(tmp, ckpt):
  path = tmp / 'nodata.ckpt'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/version', '3\n')
    z.writestr('archive/data/0', b'\0' * 16)
  return _convert(tmp, path), ['nodata.ckpt', 'data.pkl']


def case_ckpt_unknown_architecture(tmp, ckpt):
  config = {'model': {'name': 'SelfSupModel', 'depth_net': {'name': 'FancyDepthNet', 'version': '1A'}},
            'datasets': {'augmentation': {'image_shape': (64, 192)}}}
  path = torch_writer.recipe_checkpoint(tmp / 'fancy.ckpt', pose=None, fmt='zip', config=config)
  return _convert(tmp, path), ['fancy.ckpt', 'unknown architecture', 'FancyDepthNet']


def _forbidden_ckpt(tmp):
  path = tmp / 'evil.ckpt'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', torch_writer.forbidden_pickle(tmp / 'PWNED'))
    z.writestr('archive/version', '3\n')
  return path


def case_ckpt_forbidden_global_convert(tmp, ckpt):
  return _convert(tmp, _forbidden_ckpt(tmp)), ['evil.ckpt', 'os.system']


def case_ckpt_forbidden_global_infer(tmp, ckpt):
  _image(tmp / 'in' / 'ok.png')
  return _infer(tmp, _forbidden_ckpt(tmp), tmp / 'in'), ['evil.ckpt', 'os.system']


def case_ckpt_forbidden_global_train_init(tmp, ckpt):
  return _main(tmp, f'--config.model.checkpoint_path={_forbidden_ckpt(tmp)}'), ['evil.ckpt', 'os.system']


def _eval(tmp, ckpt, *overrides, output_json=None):
  """A `packnet_jax.eval` command on the KITTI config (tiny shape), JSON into tmp/out."""
  return ('packnet_jax.eval', ['--checkpoint', ckpt, '--config=configs/kitti.py', '--progress=false',
                               f'--output_json={output_json or tmp / "out" / "metrics.json"}',
                               '--config.datasets.augmentation.image_shape=(64, 192)', *overrides])


def case_eval_missing_dataset_root(tmp, ckpt):
  return (_eval(tmp, ckpt, f'--config.datasets.test.path={tmp / "no_such_root"}'),
          ['no_such_root', 'not found'])


def case_eval_forbidden_global(tmp, ckpt):
  return _eval(tmp, _forbidden_ckpt(tmp)), ['evil.ckpt', 'os.system']


def _a_file(tmp):
  blocker = tmp / 'a_file'
  blocker.write_text('not a folder')
  return blocker


def case_output_not_writable_infer(tmp, ckpt):
  _image(tmp / 'in' / 'ok.png')
  _, args = _infer(tmp, ckpt, tmp / 'in')
  args[args.index('--output') + 1] = _a_file(tmp) / 'out'
  return ('packnet_jax.infer', args), ['--output', 'a_file']


def case_output_not_writable_convert(tmp, ckpt):
  return ('packnet_jax.convert', ['--checkpoint', ckpt, '--output', _a_file(tmp) / 'out']), ['a_file']


def case_output_not_writable_export(tmp, ckpt):
  return (('packnet_jax.export', ['--checkpoint', ckpt, '--format', 'stablehlo', '--image_shape', '64,96',
                                  '--output', _a_file(tmp) / 'out' / 'model.stablehlo']),
          ['a_file'])


def case_output_not_writable_train(tmp, ckpt):
  module, args = _main(tmp)
  args[1] = f'--workdir={_a_file(tmp) / "out"}'
  return (module, args), ['a_file']


def case_output_not_writable_eval(tmp, ckpt):
  root = _kitti_copy(tmp)
  return (_eval(tmp, ckpt, f'--config.datasets.test.path={root}', '--config.datasets.test.split=split.txt',
                output_json=_a_file(tmp) / 'out' / 'metrics.json'),
          ['a_file'])


def case_torchvision_not_resnet_convert(tmp, ckpt):
  path = tmp / 'vgg11-8a719046.pth'
  torch_writer.save_zip({'features.0.weight': np.zeros((8, 3, 3, 3), np.float32),
                         'classifier.0.weight': np.zeros((10, 8), np.float32)}, path)
  return _convert(tmp, path), ['vgg11-8a719046.pth', 'torchvision ResNet state dict']


def case_truncated_pth_convert(tmp, ckpt):
  path = tmp / 'resnet18-f37072fd.pth'
  torch_writer.save_zip({'conv1.weight': np.zeros((64, 3, 7, 7), np.float32)}, path)
  path.write_bytes(path.read_bytes()[:-300])
  return _convert(tmp, path), ['resnet18-f37072fd.pth', 'truncated']


def case_pt_version_without_imagenet_file_train(tmp, ckpt):
  return (_main(tmp, '--config.model.depth_net.name=DepthResNet', '--config.model.depth_net.version=18pt'),
          ["'model.depth_net.pretrained_encoder'", 'resnet18-f37072fd.pth'])


CASES = sorted(name[len('case_'):] for name in dir() if name.startswith('case_'))


# --------------------------------------------------------------------------- the test
_FRAME_LINE = re.compile(r'^\s*File ".*", line \d+')


@pytest.mark.parametrize('case', CASES)
def test_bad_input_one_line_error_nothing_written(tmp_path, ckpt, case):
  (module, args), expected = globals()[f'case_{case}'](tmp_path, ckpt)
  result = run_cli(module, args)
  err = result.stderr
  assert result.returncode != 0, f'{module} accepted bad input ({case}); stdout:\n{result.stdout}'
  assert 'Traceback' not in err, f'{module} ({case}) printed a traceback:\n{err}'
  assert not any(_FRAME_LINE.match(line) for line in err.splitlines()), err
  lines = [line for line in err.splitlines() if all(e in line for e in expected)]
  assert lines, f'{module} ({case}): no stderr line names {expected}:\n{err}'
  assert len(lines[0]) < 600, f'error line is not short: {lines[0]!r}'
  out = tmp_path / 'out'  # May exist (created up front), but holds no file.
  written = sorted(str(p.relative_to(out)) for p in out.rglob('*') if not p.is_dir()) if out.exists() else []
  assert not written, f'{module} ({case}) wrote into its output folder: {written}'
  assert not (tmp_path / 'PWNED').exists(), 'the forbidden pickle global was executed'


def test_case_table_is_large_enough():
  assert len(CASES) >= 12, CASES
