"""Observed error vs float32 noise vs tolerance, for every parity check; and the noise of 5 training steps.

    python tools/measure_noise.py [--only SUBSTRING] [--both_xla] [--json OUT.json]
    python tools/measure_noise.py training [--depth_net DepthResNet --version 18] [--scenario S] [--json OUT]

`training`: 5 Adam steps of the self-supervised objective in float32 and in float64 from the same
start (tools/training_noise.py), per step the loss difference and the median / 90th percentile over
all parameter tensors of the gradients' and the updated parameters' relative differences, next to
torch's own figures (tests/fixtures/reference/training_noise.json) and their ratio.

Otherwise every parity check registered with `tests/lib/noise.py` (`@noise.parity_check`) is run twice: in
float32, as the tests run it, and in float64 (x64 enabled, models in compute dtype float64, so
parameters, BatchNorm statistics and heads are float64 too). One line per comparison:

  observed   max |ours_f32 − reference| (what the test sees)
  noise      max |ours_f32 − ours_f64|  (float32 rounding of our computation)
  ref_noise  max |ours_f64 − reference| (rounding of the torch float32 reference, if we match it)
  tol        the test's atol / rtol, and `margin` = tol / noise, `used` = observed / tol
             (both in units of the allclose bound atol + rtol·|ref|)

A line is flagged TIGHT if margin < 4 (the tolerance is within 4x of our own float32 noise: another
CPU or XLA version can fail it) and FAIL if used > 1. `--both_xla` runs the measurement in two
subprocesses side by side, with the default XLA:CPU flags and with
the project's CPU defaults (`packnet_jax/utils/xla_flags.py`), and prints the
worst of the two per comparison. The whole run takes about 10 minutes of CPU time (the float64
networks dominate); `--only test_geometry` and the like measure a part.
"""
import importlib
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tools')]
from absl import flags  # pylint: disable=wrong-import-position

from packnet_jax import cli  # pylint: disable=wrong-import-position
from packnet_jax.utils import xla_flags  # pylint: disable=wrong-import-position

TESTS = REPO / 'tests'
BASE_XLA_FLAGS = '--xla_force_host_platform_device_count=2'
XLA_VARIANTS = {
    'default': BASE_XLA_FLAGS,
    'cpu_defaults': ' '.join((BASE_XLA_FLAGS,) + xla_flags.CPU_DEFAULTS),
}
# Test modules that register parity checks.
PARITY_MODULES = ('test_geometry', 'test_photometric_loss', 'test_ssim_smoothness', 'test_supervised_loss',
                  'test_reprojected_distance', 'test_velocity_loss', 'test_metrics', 'test_network_parity',
                  'test_sfm_model', 'test_data_kitti')


def _max_abs(a, b):
  import numpy as np
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b))) if a.size else 0.0


def measure(only=''):
  """Runs every registered check in float32 and float64; returns one dict per comparison."""
  os.environ.setdefault('XLA_FLAGS', BASE_XLA_FLAGS)
  sys.path[:0] = [str(TESTS), str(REPO)]
  import jax
  import numpy as np
  from lib import noise  # pylint: disable=import-outside-toplevel
  for name in PARITY_MODULES:
    importlib.import_module(name)
  rows = []
  for check_name, (fn, params) in noise.CHECKS.items():
    for p in params:
      label = check_name + (f'[{",".join(map(str, p))}]' if p else '')
      if only and only not in label:
        continue
      comps32 = fn(np.float32, *p)
      with jax.enable_x64(True):  # the checks build their models in compute dtype float64
        comps64 = {c.name: c for c in fn(np.float64, *p)}
      for c in comps32:
        ours64 = np.asarray(comps64[c.name].ours)
        assert ours64.dtype == np.float64 or not np.issubdtype(ours64.dtype, np.floating), (label, c.name)
        rows.append({
            'check': label, 'comparison': c.name, 'atol': float(c.atol), 'rtol': float(c.rtol),
            'observed': _max_abs(c.ours, c.ref), 'noise': _max_abs(c.ours, ours64),
            'ref_noise': _max_abs(ours64, c.ref),
            'used': c.ratio(), 'noise_used': c.ratio(ref=ours64),
        })
      print(f'measured {label}', file=sys.stderr, flush=True)
  return rows


def _merge(runs):
  """Worst value per comparison over several runs (XLA flag variants)."""
  merged = {}
  for rows in runs:
    for r in rows:
      key = (r['check'], r['comparison'])
      if key not in merged:
        merged[key] = dict(r)
      else:
        for k in ('observed', 'noise', 'ref_noise', 'used', 'noise_used'):
          merged[key][k] = max(merged[key][k], r[k])
  return list(merged.values())


def _print_table(rows):
  print(f'{"check / comparison":<96} {"atol":>8} {"rtol":>8} {"observed":>9} {"noise":>9} {"ref_noise":>9} '
        f'{"used":>6} {"margin":>7}')
  for r in rows:
    margin = 1 / r['noise_used'] if r['noise_used'] else float('inf')
    flag = 'FAIL' if r['used'] > 1 else 'TIGHT' if margin < 4 else ''
    name = f'{r["check"]} {r["comparison"]}'
    print(f'{name:<96} {r["atol"]:8.1e} {r["rtol"]:8.1e} {r["observed"]:9.2e} {r["noise"]:9.2e} '
          f'{r["ref_noise"]:9.2e} {r["used"]:6.3f} {margin:7.1f} {flag}')


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('only', '', 'measure only checks whose label contains this', flag_values=fv)
  flags.DEFINE_bool('both_xla', False, "default XLA flags and the project's CPU defaults, side by side",
                    flag_values=fv)
  flags.DEFINE_string('json', None, 'write the rows to this file', flag_values=fv)
  fv(argv)
  return fv


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  argv = list(sys.argv if argv is None else argv)
  if argv[1:2] == ['training']:
    import training_noise  # pylint: disable=import-outside-toplevel
    return training_noise.main([f'{argv[0]} training'] + argv[2:])
  return cli.run_main(parse_flags, _run, argv)


def _run(args):
  if args.both_xla:  # the two variants run side by side; each prints its own table to its log
    procs, outs = [], []
    tmp = pathlib.Path(os.environ.get('TMPDIR', '/tmp'))
    for variant, variant_flags in XLA_VARIANTS.items():
      out, log = tmp / f'measure_noise_{variant}_{os.getpid()}.json', tmp / f'measure_noise_{variant}.log'
      print(f'== {variant}: XLA_FLAGS={variant_flags} (log: {log})', file=sys.stderr, flush=True)
      with open(log, 'w') as f:
        procs.append(subprocess.Popen([sys.executable, __file__, '--only', args.only, '--json', str(out)],
                                      env=dict(os.environ, XLA_FLAGS=variant_flags), stdout=f, stderr=subprocess.STDOUT))
      outs.append(out)
    if any(p.wait() for p in procs):
      raise ValueError('a measurement subprocess failed (see its log)')
    rows = _merge([json.loads(out.read_text()) for out in outs])
    for out in outs:
      out.unlink()
  else:
    rows = measure(args.only)
  _print_table(rows)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
