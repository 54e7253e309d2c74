"""Validation rows of one run, the table over seeds, and what counts as a collapsed run.

A row is one validation of one run (either side) in the same units: median-scaled AbsRel and
δ<1.25 without and with flip post-processing, the constant-depth baseline of that validation set
(the same metrics for a prediction that is one constant depth everywhere, after median scaling:
the median GT depth), and the predicted depth's relative spatial spread.

Collapsed (docs/compare_training.md): a run whose final validation either scores within
COLLAPSE_BASELINE_TOL (1%, relative) of the constant-depth baseline's AbsRel, or predicts depth
whose relative spatial spread (std / mean over the pixels of one image, averaged over the images)
is below COLLAPSE_SPREAD (0.01). Both describe a network that predicts (nearly) one depth for
every pixel, which median scaling turns into the baseline's score.
"""
import json
import math
import os
import tempfile

import numpy as np

COLLAPSE_BASELINE_TOL = 0.01
COLLAPSE_SPREAD = 0.01
SIDES = ('port', 'reference')
FIELDS = ('step', 'abs_rel', 'a1', 'abs_rel_pp', 'a1_pp', 'baseline_abs_rel', 'baseline_a1', 'spread',
          'num_samples', 'wall_s', 'val_s')


def row(**values):
  """One validation row with exactly FIELDS (a missing or extra field is a KeyError)."""
  extra = set(values) - set(FIELDS)
  if extra:
    raise KeyError(f'unknown row fields {sorted(extra)}')
  return {k: (int(values[k]) if k in ('step', 'num_samples') else float(values[k])) for k in FIELDS}


def relative_spread(depth):
  """std / mean of each image's depth ([N, H, W] → N floats): 0 for a constant prediction."""
  depth = np.asarray(depth, np.float64).reshape(len(depth), -1)
  return list(depth.std(axis=1) / np.maximum(depth.mean(axis=1), 1e-12))


def is_collapsed(final):
  """Whether a run's final row describes a constant-depth model (see the module docstring)."""
  near_baseline = abs(final['abs_rel'] - final['baseline_abs_rel']) <= COLLAPSE_BASELINE_TOL * final['baseline_abs_rel']
  return bool(near_baseline or final['spread'] < COLLAPSE_SPREAD)


def stats(values):
  """(mean, sample std (ddof 1; 0 for one value), standard error = std / sqrt(n))."""
  values = np.asarray(values, np.float64)
  n = len(values)
  mean = float(values.mean())
  std = float(values.std(ddof=1)) if n > 1 else 0.0
  return mean, std, std / math.sqrt(n)


def summarise(runs):
  """{side: {...}} from runs = {side: {seed: [rows]}}: final metrics over seeds and collapses."""
  out = {}
  for side, seeds in runs.items():
    finals = {seed: rows[-1] for seed, rows in sorted(seeds.items()) if rows}
    if not finals:
      continue
    summary = {'seeds': sorted(finals), 'final_step': int(min(r['step'] for r in finals.values())),
               'collapsed': sorted(s for s, r in finals.items() if is_collapsed(r))}
    for key in ('abs_rel', 'a1', 'abs_rel_pp', 'a1_pp', 'baseline_abs_rel', 'baseline_a1', 'spread'):
      mean, std, se = stats([r[key] for r in finals.values()])
      summary[key] = {'mean': mean, 'std': std, 'se': se}
    out[side] = summary
  return out


def format_table(summary):
  """The printed / saved table: final metrics per side (mean ± std, SE), collapses, port vs reference."""
  lines = [f'{"side":<10} {"seeds":>5} {"step":>6}  {"AbsRel mean ± std (SE)":<28} '
           f'{"δ<1.25 mean ± std (SE)":<28} {"const-depth AbsRel / δ":<22} {"collapsed":<12}']
  for side in SIDES:
    if side not in summary:
      continue
    s = summary[side]
    lines.append(f'{side:<10} {len(s["seeds"]):>5} {s["final_step"]:>6}  {_cell(s["abs_rel"]):<28} '
                 f'{_cell(s["a1"]):<28} {s["baseline_abs_rel"]["mean"]:.4f} / {s["baseline_a1"]["mean"]:.4f}'
                 f'{"":<6} {len(s["collapsed"])}/{len(s["seeds"])} {_seeds(s["collapsed"])}')
  if all(side in summary for side in SIDES):
    port, ref = summary['port'], summary['reference']
    for key, name in (('abs_rel', 'AbsRel'), ('a1', 'δ<1.25')):
      diff = port[key]['mean'] - ref[key]['mean']
      in_se = diff / ref[key]['se'] if ref[key]['se'] > 0 else (math.copysign(math.inf, diff) if diff else 0.0)
      pct = 100.0 * diff / ref[key]['mean'] if ref[key]['mean'] else math.nan
      lines.append(f'port - reference {name}: {diff:+.4f} = {in_se:+.2f} reference SE = {pct:+.2f}% '
                   f'of the reference mean')
  lines.append(f'collapsed: final AbsRel within {COLLAPSE_BASELINE_TOL:.0%} of the constant-depth baseline, '
               f'or relative spatial std of the predicted depth < {COLLAPSE_SPREAD}')
  return '\n'.join(lines)


def _cell(stat):
  return f'{stat["mean"]:.4f} ± {stat["std"]:.4f} ({stat["se"]:.4f})'


def _seeds(seeds):
  return '(seeds ' + ', '.join(map(str, seeds)) + ')' if seeds else ''


def write_json(path, data):
  """Writes JSON atomically (a reader never sees half a file; an interrupted run leaves the old one)."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
  with os.fdopen(fd, 'w') as fh:
    json.dump(data, fh, indent=1, sort_keys=True)
    fh.write('\n')
  os.replace(tmp, path)


def read_json(path):
  with open(path) as fh:
    return json.load(fh)
