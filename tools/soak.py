r"""Long-run stability check: host memory of a demo training run, step by step.

    python tools/soak.py [--steps 3000] [--max_growth_kib_per_step 32] [--workdir DIR] \
        [--data DIR] [--tiny] [-- --config.extra.override=...]

Runs `python -m packnet_jax.main --config=configs/demo.py` for `--steps` steps
(generating the synthetic data with tools/make_synthetic_kitti.py if `--data`
does not exist), logging every step. Each time a new step appears in the log,
the resident set size of the training process is read from
/proc/<pid>/status (VmRSS; no psutil needed). After a warm-up (compilation,
first checkpoint, input-pipeline buffers: the first `--warmup` fraction of the
steps) a least-squares line RSS(step) gives the memory growth per step. It is
fitted to the medians of 10 windows: checkpoint writes make RSS jump for a
moment, while the medians follow the baseline, which is what a leak
raises. The tool prints the numbers, writes them to <workdir>/soak.json and
exits 1 if the slope exceeds `--max_growth_kib_per_step` (or the run fails).

`--tiny` shrinks the run (32×96 images, one sample per device, no validation)
so a few thousand steps fit in tens of minutes on a laptop CPU.
Linux only (/proc). Used by the slow test in tests/test_reliability_training.py
(`pytest --runslow`).
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import types

from absl import flags

from packnet_jax import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
_STEP_LINE = re.compile(rb'\[(\d+)\] [^\n]*train/loss=')


def rss_kib(pid):
  """VmRSS of process `pid` in KiB (None if it has exited)."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1])
  except OSError:
    return None
  return None


def fit_slope(steps, values):
  """Least-squares slope of values over steps."""
  n = len(steps)
  if n < 2:
    return 0.0
  mean_s, mean_v = sum(steps) / n, sum(values) / n
  var = sum((s - mean_s) ** 2 for s in steps)
  if var == 0:
    return 0.0
  return sum((s - mean_s) * (v - mean_v) for s, v in zip(steps, values)) / var


def window_medians(samples, windows=10):
  """[(mean step, median RSS)] of `windows` consecutive chunks of samples.

  RSS jumps by the size of a checkpoint while one is written (and TF/XLA
  allocators breathe); per-window medians follow the baseline, which is what
  grows when something leaks.
  """
  size = max(1, len(samples) // windows)
  chunks = [samples[i:i + size] for i in range(0, len(samples), size)]
  out = []
  for chunk in chunks:
    rss = sorted(r for _, r in chunk)
    out.append((sum(s for s, _ in chunk) / len(chunk), rss[len(rss) // 2]))
  return out


def summarize(samples, warmup_fraction):
  """Growth statistics of [(step, rss_kib)] after the warm-up."""
  if not samples:
    return {'samples': 0}
  last_step = samples[-1][0]
  steady = [(s, r) for s, r in samples if s > warmup_fraction * last_step] or samples
  medians = window_medians(steady)
  return {
      'samples': len(samples),
      'last_step': last_step,
      'warmup_until_step': steady[0][0],
      'rss_start_mib': samples[0][1] / 1024,
      'rss_peak_mib': max(r for _, r in samples) / 1024,
      'window_median_rss_mib': [round(r / 1024, 1) for _, r in medians],
      'growth_kib_per_step': fit_slope([s for s, _ in medians], [r for _, r in medians]),
      'raw_growth_kib_per_step': fit_slope([s for s, _ in steady], [r for _, r in steady]),
      'growth_after_warmup_mib': (medians[-1][1] - medians[0][1]) / 1024,
  }


def ensure_data(path):
  if os.path.isdir(path):
    return
  subprocess.run([sys.executable, str(REPO / 'tools' / 'make_synthetic_kitti.py'), '--output', str(path)],
                 check=True)


def train_command(args, workdir):
  command = [sys.executable, '-m', 'packnet_jax.main', '--config=configs/demo.py', f'--workdir={workdir}',
             f'--config.arch.max_steps={args.steps}', '--config.logging.log_every_steps=1']
  if args.tiny:
    command += [f'--config.datasets.train.path={args.data}', '--config.datasets.validation.path=',
                '--config.datasets.augmentation.image_shape=(32, 96)', '--config.datasets.train.batch_size=1',
                '--config.logging.image_every_steps=0']
  else:
    command += [f'--config.datasets.{split}.path={args.data}' for split in ('train', 'validation', 'test')]
  return command + list(args.overrides)


def soak(args):
  """Runs the training, sampling RSS at every logged step; returns the summary dict."""
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='packnet_soak_'))
  workdir.mkdir(parents=True, exist_ok=True)
  ensure_data(args.data)
  log_path = workdir / 'soak_train.log'
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='3')
  samples, seen, start = [], 0, time.monotonic()
  with open(log_path, 'wb') as log_out, open(log_path, 'rb') as log_in:
    proc = subprocess.Popen(train_command(args, workdir), cwd=REPO, env=env, stdout=log_out,
                            stderr=subprocess.STDOUT)
    pending = b''
    try:
      while True:
        chunk = log_in.read()
        pending += chunk
        *lines, pending = pending.split(b'\n')
        for line in lines:
          match = _STEP_LINE.search(line)
          if match and int(match.group(1)) > seen:
            seen = int(match.group(1))
            rss = rss_kib(proc.pid)
            if rss is not None:
              samples.append((seen, rss))
            if args.verbose and seen % 100 == 0:
              print(f'step {seen}: RSS {rss / 1024:.1f} MiB', flush=True)
        if proc.poll() is not None and not chunk:
          break
        if not chunk:
          time.sleep(0.05)
    finally:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
  summary = summarize(samples, args.warmup)
  summary.update(returncode=proc.returncode, steps=args.steps, seconds=time.monotonic() - start,
                 bound_kib_per_step=args.max_growth_kib_per_step, log=str(log_path), tiny=args.tiny)
  (workdir / 'soak.json').write_text(json.dumps({'summary': summary, 'samples': samples}, indent=1))
  return summary


def parse_args(argv):
  """argv (program name first) → the run's settings; arguments after `--` are extra main flags."""
  fv = flags.FlagValues()
  flags.DEFINE_integer('steps', 3000, 'training steps', lower_bound=1, flag_values=fv)
  flags.DEFINE_float('max_growth_kib_per_step', 32.0, 'fail above this RSS slope after the warm-up (KiB per '
                     'step)', flag_values=fv)
  flags.DEFINE_float('warmup', 0.2, 'fraction of the steps ignored by the fit', lower_bound=0.0, upper_bound=0.9,
                     flag_values=fv)
  flags.DEFINE_string('workdir', None, 'training workdir (default: a new temporary folder)', flag_values=fv)
  flags.DEFINE_string('data', '/tmp/kitti_synth', 'synthetic KITTI tree (made if missing)', flag_values=fv)
  flags.DEFINE_bool('tiny', False, '32×96 images, batch 1 per device, no validation', flag_values=fv)
  flags.DEFINE_bool('verbose', False, 'print every 100th step', flag_values=fv)
  overrides = fv(argv)[1:]
  for extra in overrides:
    if not extra.startswith('--config.'):
      raise ValueError(f'{extra!r}: only --config.* flags for packnet_jax.main may follow "--"')
  return types.SimpleNamespace(**fv.flag_values_dict(), overrides=overrides)


def _run(args):
  summary = soak(args)
  print(json.dumps(summary, indent=1))
  if summary['returncode'] != 0:
    raise ValueError(f'training exited with status {summary["returncode"]} (log: {summary["log"]})')
  if summary.get('last_step', 0) < args.steps:
    raise ValueError(f'only {summary.get("last_step", 0)} of {args.steps} steps were logged')
  if summary['growth_kib_per_step'] > args.max_growth_kib_per_step:
    raise ValueError(f'host RSS grows {summary["growth_kib_per_step"]:.2f} KiB/step after the warm-up '
                     f'(bound {args.max_growth_kib_per_step} KiB/step)')
  print(f'ok: host RSS growth {summary["growth_kib_per_step"]:.3f} KiB/step over steps '
        f'{summary["warmup_until_step"]}..{summary["last_step"]} (bound {args.max_growth_kib_per_step})')
  return 0


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_args, _run, argv)


if __name__ == '__main__':
  sys.exit(main())
