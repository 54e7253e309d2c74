"""Depth collapse is reported, not silent (packnet_jax/train/collapse.py).

* `inv_depth_spread` against its closed form;
* the monitor reports after `patience` constant steps (not before), then a recovery;
* a real training run whose depth net is driven into a constant prediction (depth lr 10: the
  sigmoid heads saturate in the first steps) says so in its log, in TensorBoard
  (`train/depth_collapsed`) and in its result (tests/test_train_loop.py checks that a learning
  run is not flagged).
"""
import pathlib
import numpy as np
import pytest

from lib import tiny_training
from packnet_jax.data import _tf  # noqa: F401  pylint: disable=unused-import
from packnet_jax.train import collapse
from packnet_jax.train import train


def test_inv_depth_spread_closed_form():
  half = np.concatenate([np.full((1, 2, 4, 1), 1.0), np.full((1, 2, 4, 1), 3.0)], axis=1)   # std 1, mean 2
  const = np.full((1, 4, 4, 1), 0.7)
  assert float(collapse.inv_depth_spread(np.float32(const))) < 4 * np.finfo(np.float32).eps   # rounding of the mean
  np.testing.assert_allclose(float(collapse.inv_depth_spread(np.float32(half))), 0.5, rtol=1e-6)
  both = np.concatenate([half, const], axis=0)                 # batch mean of 0.5 and 0
  np.testing.assert_allclose(float(collapse.inv_depth_spread(np.float32(both))), 0.25, rtol=1e-6)


def _metrics(spread, grad):
  return {collapse.SPREAD_METRIC: spread, collapse.GRAD_METRIC: grad}


def test_monitor_reports_after_patience_then_recovery():
  monitor = collapse.CollapseMonitor(spread_threshold=1e-3, grad_threshold=1e-5, patience=3)
  assert monitor.update(1, _metrics(0.2, 1e-2)) is None
  assert monitor.update(2, _metrics(1e-6, 1e-2)) is None          # constant, but the gradient is alive
  assert [monitor.update(s, _metrics(1e-6, 1e-8)) for s in (3, 4)] == [None, None]
  message = monitor.update(5, _metrics(1e-6, 1e-8))
  assert message.startswith('step 5: DEPTH COLLAPSED') and monitor.collapsed_at == 5
  assert monitor.update(6, _metrics(0.0, 0.0)) is None             # reported once
  assert 'collapsed to a constant depth at step 5' in monitor.status_line()
  assert 'recovered from the collapse of step 5' in monitor.update(7, _metrics(0.1, 1e-3))
  assert monitor.collapsed_at is None and monitor.status_line() == ''
  off = collapse.CollapseMonitor(patience=0)
  assert all(off.update(s, _metrics(0.0, 0.0)) is None for s in range(5))


def _scalars_from_events(workdir, tag):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  out = {}
  for path in sorted(pathlib.Path(workdir).glob('events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag == tag:
          out[event.step] = float(tf.make_ndarray(value.tensor))
  return out


def test_a_collapsing_run_says_so(tmp_path, capsys, monkeypatch):
  """Depth lr 10 saturates the tiny net's sigmoid heads: constant depth, zero depth gradient."""
  tiny_training.compile_loop_steps_fast(monkeypatch)
  config = tiny_training.tiny_config(max_steps=5)
  config.optim.depth.lr = 10.0
  config.train.collapse_patience = 2
  config.checkpoint.every_steps = 0
  result = train.train_and_evaluate(config, tmp_path)
  out = capsys.readouterr().out
  later = result.history[2:]
  assert max(m[collapse.SPREAD_METRIC] for m in later) < 1e-3
  assert max(m[collapse.GRAD_METRIC] for m in later) < 1e-5
  assert result.history[0][collapse.SPREAD_METRIC] > 1e-2     # it started with structure
  assert result.collapsed_at is not None and result.collapsed_at <= 5
  assert f'step {result.collapsed_at}: DEPTH COLLAPSED' in out
  assert 'this model did not learn depth' in out
  flags = _scalars_from_events(tmp_path, 'train/depth_collapsed')
  assert flags[result.collapsed_at] == 1.0 and flags[5] == 1.0
  assert all(v == 0.0 for s, v in flags.items() if s < result.collapsed_at)
