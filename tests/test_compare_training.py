"""tools/compare_training.py without torch: the settings table and refusal, the table over seeds,
the collapse rule, the cache keys; and the synthetic generator's 30-field OXTS packets."""
import math
import sys

import numpy as np
import pytest

from compare import cache
from compare import curves
from compare import runner
from compare import settings
from configs import demo
import make_synthetic_kitti

ADAM = ((0.9, 0.999), 1e-8)  # torch.optim.Adam's defaults (torch is not needed here)


def _reference_defaults():
  """A stand-in for the reference's yacs defaults: every mapped key, with values unlike ours."""
  tree = {}
  for _, _, theirs in settings.ENTRIES:
    if theirs:
      *parents, leaf = theirs.split('.')
      node = tree
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = '<unset>'
  return tree


def _reference_for(config, extra=()):
  cfg = _reference_defaults()
  for key, value in list(settings.reference_overrides(config)) + list(extra):
    settings.set_key(cfg, key, value)
  return cfg


def _demo():
  config = demo.get_config('/data/synth')
  config.datasets.augmentation.jittering = (0.2, 0.2, 0.2, 0.05)
  return config


def _differences(config, cfg, port_adam=ADAM, ref_adam=ADAM):
  _, differ = settings.compare(settings.port_values(config, adam=port_adam),
                               settings.reference_values(cfg, ref_adam))
  return differ


def test_carried_over_config_matches_in_every_setting():
  config = _demo()
  cfg = _reference_for(config)
  assert _differences(config, cfg) == []
  # Dataset keys become the reference's one-element lists; shapes stay tuples.
  assert cfg['datasets']['train']['split'] == ['splits/train.txt']
  assert cfg['datasets']['augmentation']['image_shape'] == (64, 192)
  lines, _ = settings.compare(settings.port_values(config, adam=ADAM), settings.reference_values(cfg, ADAM))
  assert len(lines) == len(settings.ENTRIES) + 1 and not any('DIFFERS' in line for line in lines)


@pytest.mark.parametrize('ref_key, value, label', [
    ('model.loss.ssim_loss_weight', 0.5, 'loss.ssim_loss_weight'),
    ('model.optimizer.depth.lr', 1e-4, 'depth.lr'),
    ('datasets.augmentation.jittering', (), 'augmentation.jittering'),
    ('model.params.crop', 'garg', 'eval.crop'),
    ('datasets.train.batch_size', 8, 'train.batch_size'),
    ('model.depth_net.version', '18pt', 'depth_net.version'),
])
def test_a_reference_side_change_is_the_one_difference(ref_key, value, label):
  config = _demo()
  assert _differences(config, _reference_for(config, [(ref_key, value)])) == [label]


def test_settings_only_one_side_has_are_compared():
  config = _demo()
  cfg = _reference_for(config)
  config.optim.grad_clip_norm = 1.0      # the reference never clips
  config.compute_dtype = 'bfloat16'      # the reference computes in float32
  assert _differences(config, cfg) == ['grad_clip_norm', 'compute_dtype']
  config = _demo()
  config.eval.max_batches = 2            # the reference validates on the whole split
  config.datasets.train.shuffle = False  # the reference shuffles the train split
  assert _differences(config, cfg) == ['eval.max_batches', 'train.shuffle']
  config = _demo()
  assert _differences(config, cfg, ref_adam=((0.9, 0.999), 1e-7)) == ['adam.eps']
  assert _differences(config, cfg, ref_adam=((0.8, 0.999), 1e-8)) == ['adam.betas']


def test_port_adam_constants_are_read_from_its_code():
  assert settings.port_adam_constants() == ((0.9, 0.999), 1e-8)


def test_unknown_reference_key_and_override_parsing():
  with pytest.raises(ValueError, match='not a key of the reference config'):
    settings.set_key(_reference_defaults(), 'model.loss.ssim_weight', 0.5)
  assert settings.parse_ref_override('model.loss.ssim_loss_weight=0.5') == ('model.loss.ssim_loss_weight', 0.5)
  assert settings.parse_ref_override('model.params.crop=garg') == ('model.params.crop', 'garg')
  with pytest.raises(ValueError, match='KEY=VALUE'):
    settings.parse_ref_override('model.params.crop')


def test_compare_main_refuses_before_running_anything(tmp_path, monkeypatch):
  config = _demo()
  monkeypatch.setattr(runner.torch_reference, 'source_dir', lambda path: 'checkout')
  monkeypatch.setattr(settings, 'reference_config',
                      lambda cfg, source, extra: _reference_for(cfg, [('model.loss.C2', 1e-3)] + list(extra)))
  monkeypatch.setattr(settings, 'reference_adam_constants', lambda: ADAM)
  output = tmp_path / 'out'
  with pytest.raises(ValueError, match=r'refusing to compare: 1 setting\(s\) differ between the sides: loss.C2'):
    runner.compare_main(config, str(output), [0], 10, 5, ['port', 'reference'], None, [], 1)
  assert not output.exists()


def _row(step, abs_rel, a1=0.5, baseline=0.3756, spread=0.2):
  return curves.row(step=step, abs_rel=abs_rel, a1=a1, abs_rel_pp=abs_rel, a1_pp=a1, baseline_abs_rel=baseline,
                    baseline_a1=0.395, spread=spread, num_samples=40, wall_s=1.0, val_s=0.5)


def test_collapse_rule_edges():
  base = 0.4
  assert curves.is_collapsed(_row(10, base * 1.0099, baseline=base))
  assert curves.is_collapsed(_row(10, base * 0.9901, baseline=base))
  assert not curves.is_collapsed(_row(10, base * 1.0101, baseline=base))
  assert not curves.is_collapsed(_row(10, base * 0.9899, baseline=base))
  assert curves.is_collapsed(_row(10, 0.2, baseline=base, spread=0.0099))
  assert not curves.is_collapsed(_row(10, 0.2, baseline=base, spread=0.0101))
  np.testing.assert_allclose(curves.relative_spread(np.full((2, 3, 4), 7.0)), [0.0, 0.0])
  np.testing.assert_allclose(curves.relative_spread(np.array([[[1.0, 3.0]]])), [0.5])  # std 1, mean 2


def test_summary_and_table_on_known_curves():
  port = {0: [_row(0, 0.38), _row(10, 0.30, a1=0.60)], 1: [_row(0, 0.38), _row(10, 0.32, a1=0.58)],
          2: [_row(0, 0.38), _row(10, 0.3756, a1=0.40, spread=0.001)]}
  ref = {0: [_row(10, 0.30, a1=0.61)], 1: [_row(10, 0.31, a1=0.60)], 2: [_row(10, 0.32, a1=0.59)]}
  summary = curves.summarise({'port': port, 'reference': ref})
  assert summary['port']['collapsed'] == [2] and summary['reference']['collapsed'] == []
  r = summary['reference']['abs_rel']
  assert r['mean'] == pytest.approx(0.31) and r['std'] == pytest.approx(0.01)
  assert r['se'] == pytest.approx(0.01 / math.sqrt(3))
  p = summary['port']['abs_rel']
  assert p['mean'] == pytest.approx((0.30 + 0.32 + 0.3756) / 3)
  assert p['std'] == pytest.approx(np.std([0.30, 0.32, 0.3756], ddof=1))
  table = curves.format_table(summary)
  diff = (0.30 + 0.32 + 0.3756) / 3 - 0.31
  assert f'port - reference AbsRel: {diff:+.4f} = {diff / (0.01 / math.sqrt(3)):+.2f} reference SE' in table
  assert f'= {100 * diff / 0.31:+.2f}% of the reference mean' in table
  assert '1/3 (seeds 2)' in table and '0/3' in table
  assert '0.3100 ± 0.0100 (0.0058)' in table


def test_row_fields_are_exact():
  with pytest.raises(KeyError, match='unknown row fields'):
    curves.row(step=0, abs_rel=0.1, bogus=1.0)
  with pytest.raises(KeyError):
    curves.row(step=0, abs_rel=0.1)


def test_cache_key_follows_every_setting_and_nothing_else(tmp_path):
  config = _demo()
  one = runner.settings_without_run_keys(runner.port_run_config(config, 0, 100, 10).to_dict())
  other_seed = runner.settings_without_run_keys(runner.port_run_config(config, 5, 100, 10).to_dict())
  assert one == other_seed  # the seed is a key argument of its own, not part of the settings
  key = cache.run_key('port', 0, 100, 10, one, 'data')
  assert key == cache.run_key('port', 0, 100, 10, dict(reversed(list(one.items()))), 'data')
  changed = _demo()
  changed.model.loss.smooth_loss_weight = 0.01
  changed = runner.settings_without_run_keys(runner.port_run_config(changed, 0, 100, 10).to_dict())
  assert len({key, cache.run_key('reference', 0, 100, 10, one, 'data'), cache.run_key('port', 1, 100, 10, one, 'data'),
              cache.run_key('port', 0, 101, 10, one, 'data'), cache.run_key('port', 0, 100, 20, one, 'data'),
              cache.run_key('port', 0, 100, 10, changed, 'data'), cache.run_key('port', 0, 100, 10, one, 'other')}) == 7
  rows = [_row(0, 0.38), _row(10, 0.3)]
  curves.write_json(cache.finished_path(str(tmp_path), 'port', 0, key), {'key': key, 'rows': rows})
  assert cache.load_finished(str(tmp_path), 'port', 0, key) == rows
  assert cache.load_finished(str(tmp_path), 'port', 1, key) is None


def test_data_fingerprint_sees_split_and_calibration_contents(tmp_path):
  (tmp_path / 'splits').mkdir()
  (tmp_path / 'date').mkdir()
  (tmp_path / 'splits' / 'train.txt').write_text('a\n')
  (tmp_path / 'date' / 'calib_cam_to_cam.txt').write_text('P: 1\n')
  first = cache.data_fingerprint(str(tmp_path), ['splits/train.txt'])
  (tmp_path / 'date' / 'calib_cam_to_cam.txt').write_text('P: 2\n')
  second = cache.data_fingerprint(str(tmp_path), ['splits/train.txt'])
  (tmp_path / 'splits' / 'train.txt').write_text('b\n')
  third = cache.data_fingerprint(str(tmp_path), ['splits/train.txt'])
  assert len({first, second, third}) == 3


# KITTI raw's OXTS fields (devkit dataformat.txt), in file order.
OXTS_FIELDS = ('lat lon alt roll pitch yaw vn ve vf vl vu ax ay az af al au wx wy wz wf wl wu '
               'pos_accuracy vel_accuracy navstat numsats posmode velmode orimode').split()


def test_synthetic_oxts_packet_has_kittis_30_fields():
  assert len(OXTS_FIELDS) == 30
  yaw = 0.05
  pose = np.eye(4)
  pose[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
  pose[:3, 3] = [12.0, -3.0, 1.5]
  values = [float(v) for v in make_synthetic_kitti.oxts_packet(pose).split()]
  assert len(values) == 30
  packet = dict(zip(OXTS_FIELDS, values))
  assert packet['yaw'] == pytest.approx(yaw) and packet['roll'] == 0 and packet['pitch'] == 0
  assert packet['alt'] == pytest.approx(make_synthetic_kitti.ALT0 + 1.5)
  assert abs(packet['lat'] - make_synthetic_kitti.LAT0) < 1e-3 and abs(packet['lon'] - make_synthetic_kitti.LON0) < 1e-3
  assert all(packet[k] == 0 for k in OXTS_FIELDS[6:23])
  status = tuple(packet[k] for k in ('navstat', 'numsats', 'posmode', 'velmode', 'orimode'))
  assert status == (4, 10, 4, 4, 0)
  # The reader's Mercator formulas give the pose back (translation relative to the origin packet).
  from packnet_jax.data import kitti_calib  # pylint: disable=import-outside-toplevel
  scale = np.cos(make_synthetic_kitti.LAT0 * np.pi / 180.0)
  origin = kitti_calib.oxts_to_transform(np.array(make_synthetic_kitti.oxts_packet(np.eye(4)).split(), float), scale)
  back = np.linalg.inv(origin) @ kitti_calib.oxts_to_transform(np.array(values), scale)
  np.testing.assert_allclose(back, pose, atol=1e-6)


def _fake_run_command(value, exit_code=0):
  """A stand-in for one side's process: writes one row (or fails) the way the drivers do."""
  def command(work, rows_path):
    code = (f'import json, sys; json.dump([dict({_row(10, value)!r})], open(sys.argv[1], "w")); '
            f'sys.exit({exit_code})')
    return [sys.executable, '-c', code, rows_path]
  return command


def test_jobs_run_every_task_and_store_it(tmp_path):
  tasks = [(side, seed, f'{side}{seed}' * 8, _fake_run_command(0.1 * seed + (side == 'port')))
           for seed in (0, 1, 2) for side in ('port', 'reference')]
  results = runner._Jobs(2, str(tmp_path)).run_all(tasks)  # pylint: disable=protected-access
  assert sorted(results) == sorted((side, seed) for side, seed, _, _ in tasks)
  for side, seed, key, _ in tasks:
    assert results[(side, seed)][0]['abs_rel'] == pytest.approx(0.1 * seed + (side == 'port'))
    assert cache.load_finished(str(tmp_path), side, seed, key) == results[(side, seed)]


def test_jobs_report_a_failed_run(tmp_path):
  tasks = [('port', 0, 'a' * 64, _fake_run_command(0.3, exit_code=3))]
  with pytest.raises(RuntimeError, match=r'port seed 0 failed \(exit 3\)'):
    runner._Jobs(1, str(tmp_path)).run_all(tasks)  # pylint: disable=protected-access
  assert cache.load_finished(str(tmp_path), 'port', 0, 'a' * 64) is None


def test_table_with_identical_reference_seeds():
  """Zero spread on the reference side: the difference is ±inf reference SEs, with its sign."""
  ref = {0: [_row(10, 0.3756, spread=0.0)], 1: [_row(10, 0.3756, spread=0.0)]}
  port = {0: [_row(10, 0.33)], 1: [_row(10, 0.34)]}
  table = curves.format_table(curves.summarise({'port': port, 'reference': ref}))
  assert 'port - reference AbsRel: -0.0406 = -inf reference SE' in table
  assert '2/2 (seeds 0, 1)' in table
