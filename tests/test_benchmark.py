"""tools/benchmark.py and its jobs (tools/bench/): JSON-lines records at tiny shapes (fast on 2 CPU cores).

tools/ is on the tests' import path (setup.cfg, [tool:pytest] pythonpath).
"""
import json
import pathlib
import subprocess
import sys

import pytest

import benchmark
from bench import data, forward, networks, scaling, timing, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_job(module, *args):
  """The job's records, as `python tools/benchmark.py JOB ARGS...` computes them."""
  return module.run(module.parse_flags(['benchmark', *args]))


def one_error_line(capsys):
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  return lines[0]

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


def test_forward_depth_net_batch2_and_torch_reference_needs_a_checkout(capsys, tmp_path):
  records = run_job(forward, '--network', 'DepthResNet18', '--shape', '32,32', '--batch', '2',
                    '--iters', '2', '--warmup', '0')
  printed = _lines(capsys.readouterr().out)
  assert printed == json.loads(json.dumps(records))
  (rec,) = records
  assert rec['num_params'] == 14_842_236  # docs/reference.md §2.7 (incl. the unused fc)
  assert rec['frames_per_s'] == pytest.approx(2 / rec['median_s'])
  assert rec['xla_flags'] == forward.records.os.environ.get('XLA_FLAGS', '')
  # A directory that is not a packnet-sfm checkout: one line naming the flag, never a traceback.
  pytest.importorskip('torch')
  assert benchmark.main(['benchmark', 'forward', '--network', 'PoseNet', '--shape', '32,32', '--torch_reference',
                         '--torch_source', str(tmp_path)]) == 1
  assert 'expected a packnet-sfm checkout' in one_error_line(capsys)


def test_interleaved_times_alternate_calls():
  calls = []
  times = timing.interleaved_times([lambda: calls.append('a'), lambda: calls.append('b')], iters=2, warmup=1)
  assert calls == ['a', 'b'] * 3
  assert [len(t) for t in times] == [2, 2] and all(x >= 0 for t in times for x in t)


def test_interleaved_times_take_turns_in_blocks():
  # warmup round, then turns of one untimed + up to 2 timed calls until 3 timed calls each.
  calls = []
  times = timing.interleaved_times([lambda: calls.append('a'), lambda: calls.append('b')],
                                      iters=3, warmup=1, block=2)
  assert ''.join(calls) == 'ab' + 'aaa' + 'bbb' + 'aa' + 'bb'
  assert [len(t) for t in times] == [3, 3]


@pytest.mark.slow  # compiles a whole SelfSup train step (~70 s on the shared 2-core machine)
def test_train_step_compile_only_reports_memory(capsys):
  (rec,) = run_job(train_step, f'--config={ROOT / "configs" / "kitti_resnet18.py"}',
                   '--config.model.pose_net.name=PoseNet', '--shape', '32,32', '--batch', '1',
                   '--config.model.remat=full', '--compile_only')
  assert rec['benchmark'] == 'train_step' and rec['remat'] == 'full' and rec['pose_net'] == 'PoseNet'
  assert 'median_s' not in rec  # the step was not run
  assert rec['compiled_memory_bytes'] == rec['temp_bytes'] + rec['argument_bytes'] + rec['output_bytes']
  # The state is donated: the new state is written into its buffers, and the device needs the sum less that.
  assert rec['argument_bytes'] >= rec['alias_bytes'] >= 3 * 4 * (14_842_236 + 1_592_684)
  assert rec['device_memory_bytes'] == rec['compiled_memory_bytes'] - rec['alias_bytes']
  # Arguments hold at least the parameters and both Adam moments (DepthResNet18 + PoseNet, float32).
  assert rec['argument_bytes'] >= 3 * 4 * (14_842_236 + 1_592_684)
  assert len(_lines(capsys.readouterr().out)) == 1


def test_network_names():
  assert list(networks.NETWORKS) == ['PackNet01', 'PackNetSlim01', 'DepthResNet18', 'DepthResNet50',
                                     'PoseNet', 'PoseResNet18']
  assert networks.network_names('all') == list(networks.NETWORKS)
  assert networks.network_names('PoseNet, DepthResNet18') == ['PoseNet', 'DepthResNet18']
  assert scaling.device_counts(2) == [1, 2] and scaling.device_counts(6) == [1, 2, 4, 6]


@pytest.mark.parametrize('args, expected', [
    (['forward', '--network', 'NoSuchNet', '--shape', '32,32'], "--network: expected \"all\" or one of"),
    (['forward', '--network', 'PoseNet', '--shape', '32x32'], '--shape: expected "H,W"'),
    (['forward', '--shape', '48,48'], '--shape: H and W must be positive multiples of 32'),
    (['forward', '--dtype', 'float8'], 'flag --dtype=float8'),
    (['train_step', '--config.model.no_such_key=1', '--compile_only'],
     "config key 'model.no_such_key': unknown (not in configs/default.py)"),
    (['train_step', '--config=/no/such/config.py', '--compile_only'], '/no/such/config.py'),
    (['data', '--source_shape', '0,10'], '--source_shape: H and W must be positive'),
    (['data', '--jittering', 'a,b'], '--jittering: expected four numbers'),
    (['data', '--path', '/no/such/kitti'], '--path: dataset root not found: /no/such/kitti'),
    (['nojob'], "job 'nojob': expected one of forward, train_step, data, scaling"),
])
def test_bad_input_is_one_error_line(args, expected, capsys):
  assert benchmark.main(['benchmark', *args]) == 1
  assert expected in one_error_line(capsys)


def test_scaling_over_two_devices(capsys):
  records = run_job(scaling, '--network', 'PoseNet', '--shape', '32,32', '--iters', '2', '--warmup', '0')
  assert [r['devices'] for r in records] == [1, 2]  # conftest forces 2 CPU devices
  assert records[0]['efficiency'] == pytest.approx(1.0)
  assert records[1]['frames_per_s'] == pytest.approx(2 / records[1]['median_s'])
  assert records[1]['efficiency'] == pytest.approx(records[1]['frames_per_s'] / (2 * records[0]['frames_per_s']))
  assert len(_lines(capsys.readouterr().out)) == 2


def test_data_pipeline_on_synthetic_kitti():
  (rec,) = run_job(data, '--shape', '32,96', '--frames', '10', '--batch', '2', '--batches', '2', '--warmup', '1')
  assert rec['benchmark'] == 'data' and rec['dataset'] == 'synthetic KITTI'
  assert rec['images'] == 4 and rec['images_per_s'] > 0


def test_data_pipeline_on_prepared_records_with_device_jitter():
  """Records prepared at the training size from larger frames, depth loaded, and the step's jitter timed."""
  (rec,) = run_job(data, '--shape', '32,96', '--source_shape', '60,200', '--frames', '10', '--batch', '2',
                   '--batches', '2', '--warmup', '1', '--records', '--depth_type', 'velodyne', '--device_iters', '2')
  assert rec['records'] is True and rec['source_shape'] == [60, 200] and rec['shape'] == [32, 96]
  assert rec['jittering'] == [0.2, 0.2, 0.2, 0.05]
  assert rec['images'] == 4 and rec['samples_per_cpu_s'] > 0
  assert rec['device_jitter_ms'] > 0
