"""Where a finished (side, seed) run is kept in --output, keyed on everything that decides its numbers.

The key hashes the side, the seed, the step count and validation interval, that side's whole resolved
settings (our ConfigDict, or the reference's yacs overrides and checkout), a fingerprint of the data
(the split files' and calibration files' contents) and RUN_FORMAT. Re-running the tool with the same
settings reuses every finished run; changing any of them starts new runs next to the old ones
(nothing is overwritten). A run that was interrupted has no finished file and starts over.
"""
import hashlib
import json
import os

RUN_FORMAT = 1  # bump when a row's meaning changes, so old runs are not mixed with new ones


def data_fingerprint(root, split_files):
  """sha256 over the split files and the calibration files under `root` (cheap; catches a regenerated tree)."""
  digest = hashlib.sha256()
  paths = sorted(set(os.path.join(root, s) for s in split_files if s))
  for folder, _, names in sorted(os.walk(root)):
    paths += sorted(os.path.join(folder, n) for n in names if n.startswith('calib_') and n.endswith('.txt'))
    if folder.count(os.sep) - root.count(os.sep) >= 1:
      break  # calibration files sit one level down (KITTI's date folders)
  for path in paths:
    digest.update(path.encode())
    try:
      with open(path, 'rb') as fh:
        digest.update(fh.read())
    except OSError:
      digest.update(b'<missing>')
  return digest.hexdigest()


def run_key(side, seed, steps, every, settings, data):
  """Hex key of one run (see the module docstring)."""
  blob = json.dumps({'side': side, 'seed': int(seed), 'steps': int(steps), 'every': int(every),
                     'settings': settings, 'data': data, 'format': RUN_FORMAT},
                    sort_keys=True, default=repr)
  return hashlib.sha256(blob.encode()).hexdigest()


def run_name(side, seed, key):
  return f'{side}-seed{seed}-{key[:12]}'


def finished_path(output, side, seed, key):
  return os.path.join(output, 'runs', run_name(side, seed, key) + '.json')


def work_dir(output, side, seed, key):
  return os.path.join(output, 'work', run_name(side, seed, key))


def load_finished(output, side, seed, key):
  """The finished run's rows, or None."""
  path = finished_path(output, side, seed, key)
  if not os.path.exists(path):
    return None
  with open(path) as fh:
    run = json.load(fh)
  return run['rows'] if run.get('key') == key else None
