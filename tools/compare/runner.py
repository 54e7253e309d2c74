"""Orchestration of tools/compare_training.py: check the settings, run or reuse each (side, seed), write results.

Kept apart from the command line (absl flags) so that tests import it without defining flags.
"""
import json
import os
import shutil
import subprocess
import sys
import time

from compare import cache
from compare import curves
from compare import settings
import torch_reference  # imports torch only inside its functions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Settings of each run that only decide bookkeeping (logging, checkpoints, validation times), not numbers.
_RUN_KEYS = ('arch.seed', 'arch.max_steps', 'arch.validate_first', 'eval.every_steps', 'checkpoint.every_steps',
             'checkpoint.every_epochs', 'checkpoint.keep', 'logging.image_every_steps',
             'logging.progress_every_steps', 'logging.log_every_steps', 'datasets.validation.num_logs')


def port_run_config(config, seed, steps, every):
  """Our config for one run: the compared settings unchanged, the run's bookkeeping set here."""
  run = config.copy_and_resolve_references()
  run.unlock()
  run.arch.seed, run.arch.max_steps, run.arch.validate_first = int(seed), int(steps), True
  run.eval.every_steps = int(every)
  run.checkpoint.every_steps, run.checkpoint.every_epochs, run.checkpoint.keep = 0, 0, 1
  run.logging.image_every_steps, run.logging.progress_every_steps = 0, 0
  run.logging.log_every_steps = int(every)
  run.datasets.validation.num_logs = 0
  run.lock()
  return run


def settings_without_run_keys(config_dict):
  out = json.loads(json.dumps(config_dict, default=list))
  for key in _RUN_KEYS:
    *parents, leaf = key.split('.')
    node = out
    for part in parents:
      node = node[part]
    node.pop(leaf, None)
  return out


def _run(side, seed, key, command, output, log_name):
  """Runs one side's process; its stdout lines stream through, stderr goes to a log; returns rows."""
  work = cache.work_dir(output, side, seed, key)
  if os.path.isdir(work):
    shutil.rmtree(work)  # an interrupted run starts over
  os.makedirs(work)
  rows_path = os.path.join(work, 'rows.json')
  log_path = os.path.join(work, log_name)
  env = dict(os.environ, PYTHONWARNINGS='ignore',
             JAX_COMPILATION_CACHE_DIR=os.path.join(output, 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  start = time.time()
  with open(log_path, 'w') as log:
    proc = subprocess.run(command(work, rows_path), stdout=None, stderr=log, env=env, cwd=REPO, check=False)
  if proc.returncode != 0:
    with open(log_path) as fh:
      tail = fh.read().strip().splitlines()[-1:] or ['(empty log)']
    raise RuntimeError(f'{side} seed {seed} failed (exit {proc.returncode}): {tail[0][:300]} (log: {log_path})')
  rows = curves.read_json(rows_path)
  curves.write_json(cache.finished_path(output, side, seed, key),
                    {'key': key, 'side': side, 'seed': int(seed), 'rows': rows, 'seconds': time.time() - start})
  return rows


def _port_command(run_config):
  def command(work, rows_path):
    config_path = os.path.join(work, 'config.json')
    with open(config_path, 'w') as fh:
      json.dump(run_config.to_dict(), fh, default=list)
    return [sys.executable, os.path.join(REPO, 'tools', 'compare', 'port_run.py'), config_path,
            os.path.join(work, 'workdir'), rows_path]
  return command


def _reference_command(spec):
  def command(work, rows_path):
    spec_path = os.path.join(work, 'spec.json')
    with open(spec_path, 'w') as fh:
      json.dump(spec, fh)
    return [sys.executable, os.path.join(REPO, 'tools', 'compare', 'reference_run.py'), spec_path, rows_path]
  return command


def compare_main(config, output, seeds, steps, every, sides, source, ref_overrides, threads):
  """Checks the settings, runs (or reuses) every (side, seed) run, writes and prints the results."""
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  config_utils.validate_config(config)
  if steps < 1 or every < 1:
    raise ValueError(f'--steps and --every: expected >= 1, got {steps} and {every}')
  unknown = set(sides) - set(curves.SIDES)
  if unknown:
    raise ValueError(f'--sides: unknown {sorted(unknown)} (choose from {", ".join(curves.SIDES)})')
  source = str(torch_reference.source_dir(source))
  extra = [settings.parse_ref_override(text) for text in ref_overrides]
  ref_cfg = settings.reference_config(config, source, extra)
  lines, differ = settings.compare(settings.port_values(config),
                                   settings.reference_values(ref_cfg, settings.reference_adam_constants()))
  print('\n'.join(lines), flush=True)
  if differ:
    raise ValueError(f'refusing to compare: {len(differ)} setting(s) differ between the sides: {", ".join(differ)}')
  os.makedirs(output, exist_ok=True)
  data_cfg = config.datasets
  data = cache.data_fingerprint(data_cfg.train.path, [data_cfg.train.split, data_cfg.validation.split])
  ref_overrides_all = [list(kv) for kv in settings.reference_overrides(config)] + [list(kv) for kv in extra]
  threads = threads or os.cpu_count()
  runs = {side: {} for side in curves.SIDES if side in sides}
  for seed in seeds:
    for side in runs:
      if side == 'port':
        run_config = port_run_config(config, seed, steps, every)
        key = cache.run_key(side, seed, steps, every, settings_without_run_keys(run_config.to_dict()), data)
        command = _port_command(run_config)
      else:
        spec = {'torch_source': source, 'overrides': ref_overrides_all, 'seed': int(seed), 'steps': steps,
                'every': every, 'threads': threads}
        key = cache.run_key(side, seed, steps, every, {k: v for k, v in spec.items() if k != 'threads'}, data)
        command = _reference_command(spec)
      rows = cache.load_finished(output, side, seed, key)
      if rows is not None:
        print(f'{side} seed {seed}: reusing {cache.finished_path(output, side, seed, key)}', flush=True)
      else:
        print(f'{side} seed {seed}: training {steps} steps, validating every {every} '
              f'(log in {cache.work_dir(output, side, seed, key)})', flush=True)
        rows = _run(side, seed, key, command, output, 'log.txt')
      runs[side][seed] = rows
  return write_results(output, runs, lines, steps, every)


def write_results(output, runs, settings_lines, steps, every):
  """curves.json, table.txt and curves.png in `output`; prints and returns the table."""
  summary = curves.summarise(runs)
  table = curves.format_table(summary)
  curves.write_json(os.path.join(output, 'curves.json'),
                    {'steps': steps, 'every': every, 'settings': settings_lines, 'runs': runs, 'summary': summary,
                     'collapse': {'baseline_tol': curves.COLLAPSE_BASELINE_TOL, 'spread': curves.COLLAPSE_SPREAD}})
  with open(os.path.join(output, 'table.txt'), 'w') as fh:
    fh.write(table + '\n')
  from compare import plot  # pylint: disable=import-outside-toplevel
  plot.plot(runs, os.path.join(output, 'curves.png'),
            title=f'{len(next(iter(runs.values()), {}))} seeds x {steps} steps, validation every {every}')
  print(table, flush=True)
  print(f'wrote {os.path.join(output, "curves.json")}, curves.png, table.txt', flush=True)
  return table
