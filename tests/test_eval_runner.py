"""Evaluation runner and CLI on the synthetic KITTI scene (tools/make_synthetic_kitti.py).

A DepthResNet18 with fixed random weights is written as a converted directory;
`python -m packnet_jax.eval` runs the test split (3 samples on 2 devices × 2 per
device, so one slot is padding) and must print the four reference rows, the
constant-depth baseline and the distance bins, write JSON equal to the table, and
equal a direct call of the metric functions on the same predictions.
"""
import contextlib
import io
import json
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lib.synthetic import make_synthetic_kitti

from bench.networks import random_variables
from packnet_jax import api
from packnet_jax import config_utils
from packnet_jax.eval import metrics as metrics_lib
from packnet_jax.eval import predict as predict_lib
from packnet_jax.eval import report
from packnet_jax.eval import runner
from packnet_jax.eval.__main__ import main as eval_main
from packnet_jax.geometry.depth import inv2depth

REFERENCE_ROWS = tuple(r for r in runner.ROWS if r != 'median_baseline_gt')

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (64, 192)


def random_depth_resnet18(seed=0):
  """(module, variables) of DepthResNet18 with deterministic random weights (no compile)."""
  from packnet_jax.models import registry
  net = registry.build_depth_net('DepthResNet', '18')
  return net, random_variables(net, jnp.zeros((1, 64, 64, 3)), seed=seed)


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
  """(synthetic KITTI root, converted model dir)."""
  from packnet_jax.convert import converter
  base = tmp_path_factory.mktemp('eval')
  data_dir = base / 'synth'
  make_synthetic_kitti(data_dir, 15, *SHAPE)
  _, variables = random_depth_resnet18()
  config = {'format': converter.FORMAT, 'source': 'test', 'epoch': 0, 'model_name': 'SelfSupModel',
            'depth_net': {'name': 'DepthResNet', 'version': '18', 'weights': True}, 'pose_net': None,
            'image_shape': list(SHAPE), 'min_depth': 0.0, 'max_depth': 80.0, 'crop': '',
            'scale_output': 'resize', 'rotation_mode': 'euler', 'checkpoint_config': None}
  model_dir = base / 'model'
  converter.save_converted(converter.ConvertedModel(config=config, variables={'depth': variables},
                                                    unused_keys={}, messages=[]), str(model_dir))
  return data_dir, model_dir


def _argv(scene, *extra):
  data_dir, model_dir = scene
  return ['eval', '--checkpoint', str(model_dir), f'--config={ROOT / "configs" / "kitti_resnet18.py"}',
          f'--config.datasets.test.path={data_dir}', '--config.datasets.test.split=splits/test.txt',
          f'--config.datasets.augmentation.image_shape=({SHAPE[0]},{SHAPE[1]})',
          '--config.datasets.test.batch_size=2', '--noprogress', *extra]


@pytest.fixture(scope='module')
def cli_run(scene, tmp_path_factory):
  out = tmp_path_factory.mktemp('out') / 'results.json'
  buf = io.StringIO()
  with contextlib.redirect_stdout(buf):
    rc = eval_main(_argv(scene, f'--output_json={out}'))
  assert rc == 0
  return buf.getvalue(), json.loads(out.read_text())


def _table_rows(text):
  """{label: [7 floats], ...} from the printed table."""
  rows = {}
  for line in text.splitlines():
    m = re.match(r'^((?:depth|median)\S*(?: \[[^\]]+\])?)\s+((?:-?[\d.]+|-)(?:\s+(?:-?[\d.]+|-)){6})\s+(\d+)$', line)
    if m:
      rows[m.group(1)] = [float('nan') if v == '-' else float(v) for v in m.group(2).split()] + [int(m.group(3))]
  return rows


def test_cli_prints_four_rows_and_bins(cli_run):
  text, results = cli_run
  rows = _table_rows(text)
  for row in runner.ROWS:
    assert row in rows
  for row in REFERENCE_ROWS:
    for lo, hi in runner.DEFAULT_BINS:
      assert f'{row} [{runner.bin_name(lo, hi)} m]' in rows
  # Exact single pass: 3 test frames although 2 devices × 2 per device = 4 slots per batch.
  assert results['num_samples'] == 3
  assert rows['depth'][-1] == 3
  assert 'median GT/pred scale ratio' in text


def test_json_matches_table(cli_run):
  text, results = cli_run
  rows = _table_rows(text)
  for row in runner.ROWS:
    table = rows[row][:7]
    json_values = [results[row][m] for m in metrics_lib.METRIC_NAMES]
    np.testing.assert_allclose(table, json_values, atol=5.1e-5)
  for row in REFERENCE_ROWS:
    for name, bin_rows in results['bins'].items():
      values = [bin_rows[row][m] for m in metrics_lib.METRIC_NAMES]
      np.testing.assert_allclose(rows[f'{row} [{name} m]'][:7], values, atol=5.1e-5)
  assert results['params']['bins'] == [list(b) for b in runner.DEFAULT_BINS]


def test_metrics_equal_direct_call(scene, cli_run):
  """The runner's rows equal the metric functions applied to the same predictions."""
  from packnet_jax import data
  from configs import kitti_resnet18
  _, results_cli = cli_run
  data_dir, model_dir = scene
  config = kitti_resnet18.get_config()
  config.datasets.test.path = str(data_dir)
  config.datasets.test.split = 'splits/test.txt'
  config.datasets.augmentation.image_shape = SHAPE
  loaded = api.load_model(str(model_dir))
  ds_config = config_utils.dataset_config(config, 'test')
  params = runner.MetricParams.from_config(config)
  batches = list(data.build_dataset(ds_config, 'test', batch_size=2, num_devices=2).as_numpy_iterator())
  seen = []
  results = runner.evaluate(loaded.depth_net, loaded.variables['depth'], batches, params, progress=False,
                            on_batch=lambda batch, inv: seen.append(inv))
  mask = np.concatenate([b['mask'].reshape(-1) for b in batches]).astype(bool)
  gt = np.concatenate([b['depth'].reshape((-1,) + b['depth'].shape[2:]) for b in batches])[mask]
  rgb = np.concatenate([b['rgb'].reshape((-1,) + b['rgb'].shape[2:]) for b in batches])[mask]
  inv, inv_flipped = (np.asarray(x) for x in predict_lib.inv_depth_and_flipped(
      loaded.depth_net, loaded.variables['depth'], jnp.asarray(rgb)))
  np.testing.assert_allclose(np.concatenate([x.reshape((-1,) + x.shape[2:]) for x in seen])[mask], inv,
                             rtol=1e-5, atol=1e-6)
  assert gt.shape[0] == inv.shape[0] == 3
  kwargs = dict(min_depth=params.min_depth, max_depth=params.max_depth, crop=params.crop,
                scale_output=params.scale_output)
  direct = metrics_lib.evaluate_depth(jnp.asarray(gt), jnp.asarray(inv), jnp.asarray(inv_flipped), **kwargs)
  direct['median_baseline_gt'] = metrics_lib.compute_depth_metrics(
      jnp.asarray(gt), jnp.ones_like(jnp.asarray(inv)), use_gt_scale=True, **kwargs)
  for row in runner.ROWS:
    got = [results[row][m] for m in metrics_lib.METRIC_NAMES]
    np.testing.assert_allclose(got, np.asarray(direct[row]), rtol=1e-5, atol=1e-6)
    # The CLI evaluated the same predictions.
    np.testing.assert_allclose(got, [results_cli[row][m] for m in metrics_lib.METRIC_NAMES], rtol=1e-6)
  for lo, hi in params.bins:
    entry = results['bins'][runner.bin_name(lo, hi)]['depth_pp_gt']
    assert entry['num_samples'] == 3  # every synthetic frame has pixels in every bin
    pred = inv2depth(metrics_lib.post_process_inv_depth(jnp.asarray(inv), jnp.asarray(inv_flipped)))
    want = metrics_lib.compute_depth_metrics(jnp.asarray(gt), pred, use_gt_scale=True, bin_min=lo, bin_max=hi,
                                             **kwargs)
    np.testing.assert_allclose([entry[m] for m in metrics_lib.METRIC_NAMES], np.asarray(want), rtol=1e-5,
                               atol=1e-6)
  ratio = metrics_lib.depth_metrics_per_sample(jnp.asarray(gt), inv2depth(jnp.asarray(inv)),
                                               use_gt_scale=False, **kwargs)[2]
  np.testing.assert_allclose(results['median_scale_ratio'], np.median(np.asarray(ratio)), rtol=1e-6)


def test_variable_gt_sizes_and_padding_are_exact():
  """A padded batch with two GT sizes equals per-sample direct calls; padding slots are ignored."""
  rng = np.random.RandomState(0)
  params = runner.MetricParams(crop='garg', bins=((0.0, 20.0), (20.0, 80.0)))
  inv = rng.uniform(0.02, 0.5, (1, 4, 16, 48, 1)).astype(np.float32)
  inv_flipped = rng.uniform(0.02, 0.5, (1, 4, 16, 48, 1)).astype(np.float32)
  sizes = [(30, 90), (28, 96), (30, 90), (28, 96)]
  gt = np.zeros((1, 4, 30, 96, 1), np.float32)
  for i, (h, w) in enumerate(sizes):
    sparse = rng.uniform(1.0, 90.0, (h, w, 1)) * (rng.uniform(size=(h, w, 1)) < 0.5)
    gt[0, i, :h, :w] = sparse
  batch = {'depth': gt, 'depth_hw': np.asarray(sizes).reshape(1, 4, 2), 'mask': np.asarray([[1, 1, 1, 0]], bool),
           'filename': np.asarray([[b'a', b'b', b'c', b'd']])}
  acc = runner.Accumulator(params)
  runner._batch_metrics(acc, batch, inv, inv_flipped, params, cameras=())  # pylint: disable=protected-access
  results = acc.results()
  assert results['num_samples'] == 3
  per_sample = []
  evaluate_depth = jax.jit(metrics_lib.evaluate_depth, static_argnames=('crop',))
  for i in range(3):
    h, w = sizes[i]
    rows = evaluate_depth(jnp.asarray(gt[0, i:i + 1, :h, :w]), jnp.asarray(inv[0, i:i + 1]),
                                      jnp.asarray(inv_flipped[0, i:i + 1]), crop='garg')
    per_sample.append({k: np.asarray(v) for k, v in rows.items()})
  for row in REFERENCE_ROWS:
    want = np.mean([s[row] for s in per_sample], axis=0)
    np.testing.assert_allclose([results[row][m] for m in metrics_lib.METRIC_NAMES], want, rtol=1e-5, atol=1e-6)


def test_per_camera_groups():
  """Samples are grouped by the camera in their filename; overall = all samples."""
  params = runner.MetricParams(bins=((0.0, 80.0),))
  acc = runner.Accumulator(params)
  m = np.arange(21, dtype=np.float64).reshape(3, 7)
  has = np.asarray([True, True, False])
  acc.add({'depth': m}, {('depth', '0-80'): (m, has)}, ratio=[1.0, 2.0, 4.0], valid=[True, True, True],
          groups=[runner.camera_of(f, ['CAMERA_01', 'camera_05']) for f in
                  ('s0_camera_01_1', 's0_camera_05_1', 's1_camera_01_2')])
  results = acc.results()
  assert results['num_samples'] == 3
  np.testing.assert_allclose(results['depth']['abs_rel'], np.mean(m[:, 0]))
  assert sorted(results['cameras']) == ['camera_01', 'camera_05']
  cam1 = results['cameras']['camera_01']
  assert cam1['num_samples'] == 2
  np.testing.assert_allclose(cam1['depth']['rmse'], (m[0, 2] + m[2, 2]) / 2)
  # Bins average only the samples with pixels in the bin: sample 2 has none.
  assert cam1['bins']['0-80']['depth']['num_samples'] == 1
  np.testing.assert_allclose(cam1['bins']['0-80']['depth']['rmse'], m[0, 2])
  np.testing.assert_allclose(results['median_scale_ratio'], 2.0)
  np.testing.assert_allclose(cam1['median_scale_ratio'], 2.5)
  assert 'camera_01' in report.format_table(results)


def test_parse_bins_and_errors():
  assert runner.parse_bins('0,10,20') == ((0.0, 10.0), (10.0, 20.0))
  assert runner.parse_bins([(0, 5), [5, 7.5]]) == ((0.0, 5.0), (5.0, 7.5))
  with pytest.raises(ValueError, match='bins'):
    runner.parse_bins('0,ten')
  with pytest.raises(ValueError, match='increasing'):
    runner.parse_bins('10,5')
  with pytest.raises(ValueError, match='not found'):
    api.load_model('/nonexistent/model.ckpt')


def test_cli_bad_checkpoint_is_one_line(scene, capsys):
  argv = _argv(scene)
  argv[2] = '/nonexistent/path.ckpt'
  assert eval_main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and 'not found' in err and '\n' not in err


def test_load_training_workdir(tmp_path):
  """A workdir written by the trainer: config.json + checkpoints; newest step by default, or `step`."""
  from configs import demo
  from packnet_jax.models import registry
  from packnet_jax.train import optim, train_state
  from packnet_jax.workdir import checkpoints as checkpointing
  from packnet_jax.workdir import run_files as workdir
  net, depth_vars = random_depth_resnet18(seed=1)
  pose = registry.build_pose_net('PoseNet')
  pose_vars = jax.eval_shape(pose.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)),
                             jnp.zeros((1, 2, 64, 64, 3)))
  pose_vars = jax.tree_util.tree_map(lambda s: np.full(s.shape, 0.5, s.dtype), pose_vars)
  params = {'depth_net': depth_vars['params'], 'pose_net': pose_vars['params']}
  tx, _ = optim.create_optimizer(depth_lr=1e-4, pose_lr=1e-4)
  with pytest.raises(ValueError, match='not a training workdir'):
    workdir.restore_networks(tmp_path)
  manager = checkpointing.create_manager(tmp_path, async_save=False)
  for step in (3, 7):
    stats = jax.tree_util.tree_map(lambda x, s=step: x + s, depth_vars['batch_stats'])
    state = train_state.TrainState.create(params=params, batch_stats={'depth_net': stats}, tx=tx,
                                          rng=jax.random.PRNGKey(0), step=step)
    checkpointing.save(manager, state, {'epoch': 0})
  manager.wait_until_finished()
  with pytest.raises(ValueError, match='config.json'):
    api.load_model(str(tmp_path))
  workdir.write_config(str(tmp_path), demo.get_config())
  for step in (None, 3):
    loaded = api.load_model(str(tmp_path), step=step)
    want_step = step or 7
    assert isinstance(loaded.depth_net, type(net)) and loaded.source.endswith(f'(step {want_step})')
    assert loaded.image_shape == (64, 192) and loaded.pose_net is not None
    want = {'params': depth_vars['params'],
            'batch_stats': jax.tree_util.tree_map(lambda x, s=want_step: x + s, depth_vars['batch_stats'])}
    assert jax.tree_util.tree_structure(loaded.variables['depth']) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(loaded.variables['depth']), jax.tree_util.tree_leaves(want)):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match='no checkpoint at step 5'):
    api.load_model(str(tmp_path), step=5)
  with pytest.raises(ValueError, match='--step'):
    api.load_model(str(tmp_path / 'checkpoints' / '7'), step=3)
