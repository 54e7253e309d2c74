"""Orchestration of tools/compare_training.py: check the settings, run or reuse each (side, seed), write results.

Kept apart from the command line (absl flags) so that tests import it without defining flags.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

from compare import cache
from compare import curves
from compare import settings
import torch_reference  # imports torch only inside its functions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Settings of each run that only decide bookkeeping (logging, checkpoints, validation times), not numbers.
_RUN_KEYS = ('arch.seed', 'arch.max_steps', 'arch.validate_first', 'eval.schedule', 'eval.every_steps', 'checkpoint.every_steps',
             'checkpoint.every_epochs', 'checkpoint.keep', 'logging.image_every_steps',
             'logging.progress_every_steps', 'logging.log_every_steps', 'datasets.validation.num_logs')


def port_run_config(config, seed, steps, every):
  """Our config for one run: the compared settings unchanged, the run's bookkeeping set here."""
  run = config.copy_and_resolve_references()
  run.unlock()
  run.arch.seed, run.arch.max_steps, run.arch.validate_first = int(seed), int(steps), True
  run.eval.schedule, run.eval.every_steps = 'steps', int(every)
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


class _Jobs:
  """Runs (side, seed) processes, up to `jobs` at a time, each pinned to its own CPU core when jobs > 1.

  Pinning keeps two concurrent runs from competing for both cores (XLA sizes its thread pool by the
  affinity; torch gets one thread). On failure or Ctrl-C every process started here is killed.
  """

  def __init__(self, jobs, output):
    self.jobs, self.output = max(1, int(jobs)), output
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
    self.free_cores = cores if self.jobs > 1 and len(cores) > 1 else []
    self.lock = threading.Lock()
    self.procs = set()

  def run(self, side, seed, key, command):
    """One process; its stdout lines stream through, stderr goes to work/.../log.txt; returns rows."""
    work = cache.work_dir(self.output, side, seed, key)
    if os.path.isdir(work):
      shutil.rmtree(work)  # an interrupted run starts over
    os.makedirs(work)
    rows_path, log_path = os.path.join(work, 'rows.json'), os.path.join(work, 'log.txt')
    # OMP_WAIT_POLICY=PASSIVE: torch's idle OpenMP threads sleep instead of spinning, which kept a
    # 2-thread reference 3-5x slower than 1 thread on a shared 2-core machine (numbers unchanged).
    env = dict({'OMP_WAIT_POLICY': 'PASSIVE'}, **os.environ)
    env.update(PYTHONWARNINGS='ignore',
               JAX_COMPILATION_CACHE_DIR=os.path.join(self.output, 'jax_cache'),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
    with self.lock:
      core = self.free_cores.pop(0) if self.free_cores else None
    start = time.time()
    try:
      with open(log_path, 'w') as log:
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        proc = subprocess.Popen(command(work, rows_path), stdout=None, stderr=log, env=env, cwd=REPO,
                                preexec_fn=pin)
        with self.lock:
          self.procs.add(proc)
        returncode = proc.wait()
        with self.lock:
          self.procs.discard(proc)
    finally:
      if core is not None:
        with self.lock:
          self.free_cores.append(core)
    if returncode != 0:
      with open(log_path) as fh:
        tail = fh.read().strip().splitlines()[-1:] or ['(empty log)']
      raise RuntimeError(f'{side} seed {seed} failed (exit {returncode}): {tail[0][:300]} (log: {log_path})')
    rows = curves.read_json(rows_path)
    curves.write_json(cache.finished_path(self.output, side, seed, key),
                      {'key': key, 'side': side, 'seed': int(seed), 'rows': rows, 'seconds': time.time() - start,
                       'core': core})
    return rows

  def run_all(self, tasks):
    """tasks: [(side, seed, key, command)] → {(side, seed): rows}; the first failure stops the rest.

    A free worker takes the next task of the side with the fewest runs going (then the most left),
    so with 2 jobs one port and one reference run go side by side, and each port run after the
    first finds its programs in the compilation cache.
    """
    queues = {}
    for task in tasks:
      queues.setdefault(task[0], []).append(task)
    running = {side: 0 for side in queues}
    results, errors = {}, []
    cond = threading.Condition(self.lock)

    def take():
      with cond:
        sides = [side for side in queues if queues[side]]
        if errors or not sides:
          return None
        side = min(sides, key=lambda sd: (running[sd], -len(queues[sd])))
        running[side] += 1
        return queues[side].pop(0)

    def worker():
      while True:
        task = take()
        if task is None:
          return
        try:
          rows = self.run(*task)
          with cond:
            results[task[:2]] = rows
        except BaseException as e:  # pylint: disable=broad-except
          with cond:
            errors.append(e)
            for proc in self.procs:
              proc.kill()  # only the processes this tool started
          return
        finally:
          with cond:
            running[task[0]] -= 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(self.jobs, len(tasks)))]
    for thread in threads:
      thread.start()
    try:
      for thread in threads:
        while thread.is_alive():
          thread.join(timeout=1.0)
    except BaseException:  # Ctrl-C: stop every run started here
      with cond:
        errors.append(KeyboardInterrupt())
        for proc in self.procs:
          proc.kill()
      raise
    if errors:
      raise errors[0]
    return results


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


def compare_main(config, output, seeds, steps, every, sides, source, ref_overrides, threads, jobs=1):
  """Checks the settings, runs (or reuses) every (side, seed) run, writes and prints the results."""
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  config_utils.validate_config(config)
  if steps < 1 or every < 1 or jobs < 1:
    raise ValueError(f'--steps, --every and --jobs: expected >= 1, got {steps}, {every} and {jobs}')
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
  threads = threads or (1 if jobs > 1 else os.cpu_count())
  runs = {side: {} for side in curves.SIDES if side in sides}
  tasks = []
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
        runs[side][seed] = rows
      else:
        print(f'{side} seed {seed}: to train {steps} steps, validating every {every} '
              f'(log in {cache.work_dir(output, side, seed, key)})', flush=True)
        tasks.append((side, seed, key, command))
  for (side, seed), rows in _Jobs(jobs, output).run_all(tasks).items():
    runs[side][seed] = rows
  runs = {side: dict(sorted(seeds_rows.items())) for side, seeds_rows in runs.items()}
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
