"""Observed error vs float32 noise vs tolerance, for every parity check of the test suite.

    python tools/measure_noise.py [--only SUBSTRING] [--both_xla] [--json OUT.json]

Every parity check registered with `tests/noise.py` (`@noise.parity_check`) is run twice: in float32,
as the tests run it, and in float64 (x64 enabled, and every float32 cast inside packnet_jax.models
turned into float64, so BatchNorm statistics and heads are float64 too). One line per comparison:

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
import argparse
import contextlib
import importlib
import json
import os
import pathlib
import subprocess
import sys
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from packnet_jax.utils import xla_flags  # pylint: disable=wrong-import-position

TESTS = REPO / 'tests'
BASE_XLA_FLAGS = '--xla_force_host_platform_device_count=2'
XLA_VARIANTS = {
    'default': BASE_XLA_FLAGS,
    'cpu_defaults': ' '.join((BASE_XLA_FLAGS,) + xla_flags.CPU_DEFAULTS),
}
# Test modules that register parity checks.
PARITY_MODULES = ('test_geometry', 'test_photometric_loss', 'test_ssim_smoothness', 'test_supervised_loss',
                  'test_reprojected_distance', 'test_velocity_loss', 'test_metrics', 'test_networks',
                  'test_sfm_model', 'test_data_kitti')
# Modules whose `jnp.float32` casts become float64 for the float64 run.
_FLOAT32_CASTING_MODULES = ('layers', 'resnet_encoder', 'pose_net', 'pose_resnet', 'packnet', 'depth_resnet',
                            'sfm_model')


@contextlib.contextmanager
def float64_everywhere():
  """x64 on, and `jnp.float32` read as float64 inside the model modules (their explicit casts)."""
  import jax
  import jax.numpy as jnp

  class _Jnp64(types.ModuleType):
    def __getattr__(self, name):
      return jnp.float64 if name == 'float32' else getattr(jnp, name)

  proxy = _Jnp64('jnp_float64')
  patched = []
  for name in _FLOAT32_CASTING_MODULES:
    module = importlib.import_module(f'packnet_jax.models.{name}')
    patched.append((module, module.jnp))
    module.jnp = proxy
  try:
    with jax.enable_x64(True):
      yield
  finally:
    for module, original in patched:
      module.jnp = original


def _max_abs(a, b):
  import numpy as np
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b))) if a.size else 0.0


def measure(only=''):
  """Runs every registered check in float32 and float64; returns one dict per comparison."""
  os.environ.setdefault('XLA_FLAGS', BASE_XLA_FLAGS)
  sys.path[:0] = [str(TESTS), str(REPO)]
  import numpy as np
  import noise
  for name in PARITY_MODULES:
    importlib.import_module(name)
  rows = []
  for check_name, (fn, params) in noise.CHECKS.items():
    for p in params:
      label = check_name + (f'[{",".join(map(str, p))}]' if p else '')
      if only and only not in label:
        continue
      comps32 = fn(np.float32, *p)
      with float64_everywhere():
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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--only', default='', help='measure only checks whose label contains this')
  parser.add_argument('--both_xla', action='store_true', help='default XLA flags and XNN individual-conv')
  parser.add_argument('--json', help='write the rows to this file')
  args = parser.parse_args(argv)
  if args.both_xla:  # the two variants run side by side; each prints its own table to its log
    procs, outs = [], []
    tmp = pathlib.Path(os.environ.get('TMPDIR', '/tmp'))
    for variant, flags in XLA_VARIANTS.items():
      out, log = tmp / f'measure_noise_{variant}_{os.getpid()}.json', tmp / f'measure_noise_{variant}.log'
      print(f'== {variant}: XLA_FLAGS={flags} (log: {log})', file=sys.stderr, flush=True)
      with open(log, 'w') as f:
        procs.append(subprocess.Popen([sys.executable, __file__, '--only', args.only, '--json', str(out)],
                                      env=dict(os.environ, XLA_FLAGS=flags), stdout=f, stderr=subprocess.STDOUT))
      outs.append(out)
    if any(p.wait() for p in procs):
      print('error: a measurement subprocess failed (see its log)', file=sys.stderr)
      return 1
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
