"""One CLI style: every entry point has a console script, answers --help, applies the CPU defaults,
and reports bad input in one `error:` line (packnet_jax/cli.py)."""
import configparser
import importlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lib.synthetic import make_synthetic_kitti
from lib.env import single_device_env
from packnet_jax import cli
from packnet_jax.convert import __main__ as convert_cli
from packnet_jax.data import prepare
from packnet_jax.eval import __main__ as eval_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY_POINTS = {'packnet-train', 'packnet-eval', 'packnet-infer', 'packnet-export', 'packnet-convert',
                'packnet-prepare'}


def console_scripts():
  parser = configparser.ConfigParser()
  parser.read(ROOT / 'setup.cfg')
  lines = [l.strip() for l in parser['options.entry_points']['console_scripts'].splitlines() if l.strip()]
  return dict(tuple(part.strip() for part in line.split('=')) for line in lines)


def test_every_entry_point_has_a_console_script_that_resolves():
  scripts = console_scripts()
  assert set(scripts) == ENTRY_POINTS
  for target in scripts.values():
    module, function = target.split(':')
    assert callable(getattr(importlib.import_module(module), function)), target


def one_error_line(capsys):
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  return lines[0]


@pytest.mark.parametrize('argv, expected', [
    (['prepare', 'velodyne', '--root', '/no/such/root'], '--root: dataset root not found: /no/such/root'),
    (['prepare', 'nojob'], "job 'nojob': expected one of records, velodyne"),
    (['prepare'], 'job missing: expected one of records, velodyne'),
    (['prepare', 'records', '--root', '.', '--output', '/tmp/x', '--tfds_config', 'nope'],
     "--tfds_config: KITTI has no config 'nope'"),
    (['prepare', 'records', '--root', '.', '--output', '/tmp/x', '--image_shape', '30,40'],
     '--image_shape: H and W must be positive multiples of 32'),
    (['prepare', 'velodyne', '--root', '.', '--cameras', '2,x'], '--cameras: expected integers'),
    (['prepare', 'velodyne', '--root', '.', '--no_such_flag'], "Unknown command line flag 'no_such_flag'"),
    (['convert', '--checkpoint', '/no/such.ckpt', '--output', '/tmp/x'], '/no/such.ckpt: checkpoint file'),
    (['convert', '--output', '/tmp/x'], 'checkpoint'),
    (['eval', '--checkpoint', '.', '--config=/no/such/config.py'],
     "--config: cannot load '/no/such/config.py' (a configs/*.py file with get_config())"),
])
def test_bad_input_is_one_error_line(argv, expected, capsys):
  main = {'prepare': prepare.main, 'convert': convert_cli.main, 'eval': eval_cli.main}[argv[0]]
  assert main(argv) == cli.EXIT_ERROR
  assert expected in one_error_line(capsys)


def test_help_prints_the_docstring_and_the_flags(capsys):
  assert prepare.main(['prepare', 'records', '--help']) == 0
  out = capsys.readouterr().out
  assert out.startswith('Dataset preparation CLI') and '--tfds_config' in out and '--image_shape' in out
  assert convert_cli.main(['convert', '-h']) == 0
  out = capsys.readouterr().out
  assert out.startswith('CLI: python -m packnet_jax.convert') and '--overwrite' in out
  assert prepare.main(['prepare', '--help']) == 0
  assert 'jobs: records, velodyne (each takes --help)' in capsys.readouterr().out


def test_convert_applies_the_cpu_defaults():
  """A fresh process without XLA_FLAGS gets the CPU defaults from the CLI itself."""
  env = single_device_env()
  env.pop('XLA_FLAGS', None)
  code = ('import os, sys; from packnet_jax.convert.__main__ import main; '
          "main(['convert', '--checkpoint', '/no/such.ckpt', '--output', '/tmp/x']); "
          "print(os.environ['XLA_FLAGS'])")
  out = subprocess.run([sys.executable, '-c', code], env=dict(env, PYTHONPATH=str(ROOT)), cwd=ROOT,
                       capture_output=True, text=True, check=True, timeout=120).stdout
  from packnet_jax.utils import xla_flags  # pylint: disable=import-outside-toplevel
  assert out.strip().splitlines()[-1] == ' '.join(xla_flags.CPU_DEFAULTS)


def test_prepare_velodyne_writes_one_map_per_scan_and_camera(tmp_path, capsys):
  root = make_synthetic_kitti(tmp_path / 'kitti', frames=6, height=32, width=96)
  drive = next(root.glob('*/*_sync'))
  for old in drive.glob('proj_depth/velodyne/*/*.npz'):
    old.unlink()
  assert prepare.main(['prepare', 'velodyne', '--root', str(root), '--cameras', '2']) == 0
  assert capsys.readouterr().out.strip() == f'wrote 6 depth maps under {root}'
  maps = sorted(drive.glob('proj_depth/velodyne/*/*.npz'))
  assert [m.parent.name for m in maps] == ['image_02'] * 6
  with np.load(maps[0]) as f:
    depth = f['velodyne_depth']
  assert depth.shape == (32, 96) and depth.dtype == np.float32
  # Sparse, positive where set, within the synthetic scene's range.
  assert 0 < np.count_nonzero(depth) < depth.size and depth.min() == 0 and 0 < depth.max() < 1e3


def test_every_command_line_parses_with_absl_through_cli():
  """No second flag library: the package and the tools parse with absl flags via packnet_jax.cli
  (tools/compare, the side-by-side training comparison, keeps its own parser for now)."""
  offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / 'packnet_jax').rglob('*.py'))
               + sorted((ROOT / 'tools').rglob('*.py'))
               if 'compare' not in p.relative_to(ROOT).parts[:2] and 'import argparse' in p.read_text()]
  assert offenders == []
  mains = [p for p in sorted((ROOT / 'tools').glob('*.py')) if "if __name__ == '__main__':" in p.read_text()]
  assert len(mains) >= 8
  for path in mains:
    text = path.read_text()
    assert 'cli.run_main(' in text or 'cli.run_job(' in text or path.name == 'compare_training.py', path.name
