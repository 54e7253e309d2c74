"""Evaluation results as text, TensorBoard scalars and JSON (results come from `runner.evaluate`)."""
import json
import math
import os

from packnet_jax.eval import metrics as metrics_lib
from packnet_jax.eval.runner import OVERALL
from packnet_jax.eval.runner import ROWS
from packnet_jax.utils import io as io_utils
from packnet_jax.utils.metric_names import parse_monitor


def is_multi(results):
  """Whether `results` is `{prefix: results}` (a split of several datasets) rather than one results dict."""
  return 'num_samples' not in results


def per_dataset(results):
  """[(prefix, results)] of either shape; the prefix of a single dataset is ''."""
  return [(k, v) for k, v in results.items() if isinstance(v, dict)] if is_multi(results) else [('', results)]


def monitored_value(results, name, index=0):
  """The value of metric `name` (reference naming) of validation dataset `index`."""
  datasets = per_dataset(results)
  if not 0 <= index < len(datasets):
    raise ValueError(f'checkpoint.monitor_index: {index} is not one of the {len(datasets)} validation datasets')
  row, metric = parse_monitor(name)
  return float(datasets[index][1][row][metric])


def summary_line(results):
  """One human-readable line with the headline metrics (overall)."""
  return ('AbsRel {:.4f} (median-scaled {:.4f}, +flip pp {:.4f}; constant-depth baseline {:.4f}) '
          'RMSE {:.3f} δ<1.25 {:.3f} on {} samples').format(
              results['depth']['abs_rel'], results['depth_gt']['abs_rel'],
              results.get('depth_pp_gt', results['depth_gt'])['abs_rel'],
              results['median_baseline_gt']['abs_rel'], results['depth_gt']['rmse'],
              results['depth_gt']['a1'], int(results['num_samples']))


def scalars(results):
  """Flat {'<row>/<metric>': float} of the overall rows and bins (`bins/<bin>/<row>/<metric>`)."""
  out = {'num_samples': float(results['num_samples']),
         'median_scale_ratio': float(results['median_scale_ratio'])}
  for row in ROWS:
    for name, value in (results.get(row) or {}).items():
      out[f'{row}/{name}'] = float(value)
  for bname, rows in (results.get('bins') or {}).items():
    for row, values in rows.items():
      for name in metrics_lib.METRIC_NAMES:
        out[f'bins/{bname}/{row}/{name}'] = float(values[name])
  return out


def format_table(results, title=''):
  """Text table of the rows (and bins) of every group; numbers as in the JSON (4 decimals)."""
  groups = [(OVERALL, results)] + sorted((results.get('cameras') or {}).items())
  if len(groups) == 2 and groups[1][1]['num_samples'] == results['num_samples']:
    groups = groups[:1]  # A single camera adds nothing to the overall numbers.
  header = f'{"row":<26}' + ''.join(f'{m:>10}' for m in metrics_lib.METRIC_NAMES) + f'{"samples":>9}'
  lines = []
  for name, res in groups:
    lines.append(f'== {title + " " if title else ""}{name}: {res["num_samples"]} samples, median GT/pred '
                 f'scale ratio {res["median_scale_ratio"]:.4f} ==')
    lines.append(header)
    lines.append('-' * len(header))
    for row in ROWS:
      if row in res:
        lines.append(_table_line(row, res[row], res['num_samples']))
    for bname, rows in res.get('bins', {}).items():
      for row in ROWS:
        if row in rows:
          lines.append(_table_line(f'{row} [{bname} m]', rows[row], rows[row]['num_samples']))
  return '\n'.join(lines)


def _table_line(label, values, count):
  cells = ''.join(f'{values[m]:>10.4f}' if not math.isnan(values[m]) else f'{"-":>10}'
                  for m in metrics_lib.METRIC_NAMES)
  return f'{label:<26}{cells}{count:>9d}'


def write_json(path, results):
  """Writes the results as JSON atomically."""
  text = json.dumps(results, indent=2, sort_keys=True, allow_nan=True)
  io_utils.atomic_write_text(os.fspath(path), text + '\n')
