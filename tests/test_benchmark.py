"""tools/benchmark.py: JSON-lines records at tiny shapes (fast on 2 CPU cores)."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))

import benchmark  # noqa: E402  pylint: disable=wrong-import-position

ENV_KEYS = ('platform', 'device_kind', 'jax', 'flax', 'numpy', 'python', 'num_devices')


def _lines(text):
  return [json.loads(line) for line in text.splitlines() if line.startswith('{')]


def test_forward_cli_prints_json_lines():
  """The documented command line, as a subprocess, at a tiny shape and one network."""
  out = subprocess.run([sys.executable, str(ROOT / 'tools' / 'benchmark.py'), 'forward', '--network', 'PoseNet',
                        '--shape', '32,64', '--iters', '3', '--warmup', '1'],
                       check=True, capture_output=True, text=True, cwd=ROOT).stdout
  records = _lines(out)
  assert len(records) == 1
  rec = records[0]
  assert rec['benchmark'] == 'forward' and rec['network'] == 'PoseNet'
  assert rec['shape'] == [32, 64] and rec['batch'] == 1 and rec['iters'] == 3
  assert 0 < rec['median_s'] <= rec['p90_s']
  assert rec['min_s'] <= rec['median_s']
  assert rec['frames_per_s'] == pytest.approx(1 / rec['median_s'])
  assert rec['compile_s'] > 0
  assert rec['num_params'] == 1_592_684  # docs/reference.md §2.7, PoseNet with 2 context images
  for key in ENV_KEYS:
    assert key in rec
  assert rec['platform'] == 'cpu'


def test_forward_depth_net_batch2_and_torch_reference_skip(capsys, tmp_path):
  records = benchmark.main(['forward', '--network', 'DepthResNet18', '--shape', '32,32', '--batch', '2',
                            '--iters', '2', '--warmup', '0', '--torch_reference', str(tmp_path)])
  printed = _lines(capsys.readouterr().out)
  assert printed == json.loads(json.dumps(records))
  rec, ref = records
  assert rec['num_params'] == 14_842_236  # docs/reference.md §2.7 (incl. the unused fc)
  assert rec['frames_per_s'] == pytest.approx(2 / rec['median_s'])
  # No reference code (and maybe no torch) there: a record that says why, never a crash.
  assert ref['benchmark'] == 'forward_torch' and 'skipped' in ref


def test_network_names_and_bad_input():
  assert list(benchmark.NETWORKS) == ['PackNet01', 'PackNetSlim01', 'DepthResNet18', 'DepthResNet50',
                                      'PoseNet', 'PoseResNet18']
  with pytest.raises(SystemExit, match='--network'):
    benchmark.main(['forward', '--network', 'NoSuchNet', '--shape', '32,32'])
  with pytest.raises(SystemExit, match='--shape'):
    benchmark.main(['forward', '--network', 'PoseNet', '--shape', '32x32'])


def test_scaling_over_two_devices(capsys):
  records = benchmark.main(['scaling', '--network', 'PoseNet', '--shape', '32,32', '--iters', '2', '--warmup', '0'])
  assert [r['devices'] for r in records] == [1, 2]  # conftest forces 2 CPU devices
  assert records[0]['efficiency'] == pytest.approx(1.0)
  assert records[1]['frames_per_s'] == pytest.approx(2 / records[1]['median_s'])
  assert records[1]['efficiency'] == pytest.approx(records[1]['frames_per_s'] / (2 * records[0]['frames_per_s']))
  assert len(_lines(capsys.readouterr().out)) == 2


def test_data_pipeline_on_synthetic_kitti():
  (rec,) = benchmark.main(['data', '--shape', '32,96', '--frames', '10', '--batch', '2', '--batches', '2',
                           '--warmup', '1'])
  assert rec['benchmark'] == 'data' and rec['dataset'] == 'synthetic KITTI'
  assert rec['images'] == 4 and rec['images_per_s'] > 0
