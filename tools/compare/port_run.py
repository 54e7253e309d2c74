"""One port run in its own process: `packnet_jax.train.train.train_and_evaluate` with a validation hook.

  python tools/compare/port_run.py CONFIG_JSON WORKDIR OUT_JSON

CONFIG_JSON is the resolved ConfigDict as JSON (the tool writes it; lists become tuples again through
`default.get_config().update`). Each validation that the training loop runs (step 0 with
arch.validate_first, every eval.every_steps, the end) appends a row (curves.row) to OUT_JSON; the
hook wraps the loop's own `run_validation`, so the numbers are those of packnet_jax.eval. The
predicted depth's spatial spread (curves.relative_spread) is taken from the predictions that
evaluation makes anyway, through the runner's `on_batch` callback.
"""
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [REPO, os.path.join(REPO, 'tools')]

import numpy as np  # noqa: E402  pylint: disable=wrong-import-position

from compare import curves  # noqa: E402  pylint: disable=wrong-import-position


def _hooked(train_lib, runner, rows, out_path, start):
  """Wraps train_lib.run_validation and runner.evaluate to record one row per validation."""
  spreads = []
  evaluate, run_validation = runner.evaluate, train_lib.run_validation

  def evaluate_hook(*args, on_batch=None, **kwargs):
    def both(batch, inv):
      inv = np.asarray(inv, np.float64)
      depth = 1.0 / np.maximum(inv.reshape((-1,) + inv.shape[-3:-1]), 1e-12)
      if 'mask' in batch:  # padding samples of the last batch
        depth = depth[np.asarray(batch['mask']).reshape(-1).astype(bool)]
      spreads.extend(curves.relative_spread(depth))
      if on_batch is not None:
        on_batch(batch, inv)
    return evaluate(*args, on_batch=both, **kwargs)

  def run_validation_hook(config, model, host_state, writer, step, workdir):
    spreads.clear()
    t0 = time.time()
    results = run_validation(config, model, host_state, writer, step, workdir)
    rows.append(curves.row(
        step=step, abs_rel=results['depth_gt']['abs_rel'], a1=results['depth_gt']['a1'],
        abs_rel_pp=results.get('depth_pp_gt', results['depth_gt'])['abs_rel'],
        a1_pp=results.get('depth_pp_gt', results['depth_gt'])['a1'],
        baseline_abs_rel=results['median_baseline_gt']['abs_rel'],
        baseline_a1=results['median_baseline_gt']['a1'], spread=float(np.mean(spreads)),
        num_samples=int(results['num_samples']), wall_s=time.time() - start, val_s=time.time() - t0))
    curves.write_json(out_path, rows)
    print(f'port seed {config.arch.seed} step {step}: AbsRel {rows[-1]["abs_rel"]:.4f} '
          f'δ<1.25 {rows[-1]["a1"]:.4f} ({rows[-1]["wall_s"]:.0f} s)', flush=True)
    return results

  runner.evaluate, train_lib.run_validation = evaluate_hook, run_validation_hook


def main(argv):
  config_json, workdir, out_path = argv[1:4]
  start = time.time()
  from configs import default  # pylint: disable=import-outside-toplevel
  from packnet_jax.eval import runner  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import train as train_lib  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import xla_flags  # pylint: disable=import-outside-toplevel
  xla_flags.apply_cpu_defaults()
  config = default.get_config()
  with open(config_json) as fh:
    config.update(json.load(fh))
  rows = []
  _hooked(train_lib, runner, rows, out_path, start)
  train_lib.train_and_evaluate(config, workdir)
  curves.write_json(out_path, rows)
  sys.stdout.flush()
  sys.stderr.flush()
  # Everything is written (the final checkpoint was waited for); skip the interpreter's teardown of
  # TensorFlow / orbax threads, which took ~45 s of a 2-minute run.
  os._exit(0)  # pylint: disable=protected-access


if __name__ == '__main__':
  main(sys.argv)
