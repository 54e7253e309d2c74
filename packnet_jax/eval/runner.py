"""Depth evaluation over a dataset split: one exact, batched, pmapped pass.

The one evaluation of the project: training validation, the eval CLI and
`packnet_jax.load_model(...)`-based scripts all call `evaluate`.

For every real sample (the pipeline pads the last batches and marks them with
`mask`) the depth net runs on the image and on its horizontal flip; the
reference's four rows are computed per sample (docs/reference.md §5):

  depth        raw prediction              depth_gt     raw, GT-median-scaled
  depth_pp     flip post-processed         depth_pp_gt  post-processed, GT-median-scaled
  median_baseline_gt   a constant depth, GT-median-scaled: what a net that
                       learned nothing about the scene scores

and averaged over samples exactly as the reference averages over its batches
(a sample without valid GT pixels adds zeros but counts). Beyond the
reference: the same rows restricted to GT distance bins (default 0–10, 10–20,
20–40, 40–80 m; averaged over the samples that have pixels in the bin), the
median over samples of the per-image GT/prediction scale ratio (1 for a
metric-scale model, whose metric-scale rows are `depth`/`depth_pp`), and for
multi-camera datasets (DDAD) every number per camera and overall.

GT maps keep their native size (it may differ between samples, KITTI drives
do): each sample's map is cut to its true size (`depth_hw`) before the
prediction is resized to it, so the result equals the metric functions
applied sample by sample.
"""
import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from packnet_jax.eval import metrics as metrics_lib
from packnet_jax.eval import predict as predict_lib
from packnet_jax.geometry.depth import inv2depth
from packnet_jax.parallel import device_layout

ROWS = ('depth', 'depth_pp', 'depth_gt', 'depth_pp_gt', 'median_baseline_gt')
DEFAULT_BINS = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0))
OVERALL = 'overall'


@dataclasses.dataclass(frozen=True)
class MetricParams:
  """The evaluation settings of the reference's `model.params` node, plus distance bins."""
  crop: str = ''
  min_depth: float = 0.0
  max_depth: float = 80.0
  scale_output: str = 'resize'
  bins: tuple = DEFAULT_BINS
  post_process: bool = True

  @classmethod
  def from_config(cls, config, bins=None):
    """From an experiment config (`model.params`, `eval.post_process`, `eval.distance_bins`)."""
    params = config.model.params
    bins = bins or config.eval.distance_bins or DEFAULT_BINS
    return cls(crop=params.crop, min_depth=float(params.min_depth), max_depth=float(params.max_depth),
               scale_output=params.scale_output, bins=parse_bins(bins),
               post_process=bool(config.eval.post_process))


def parse_bins(bins):
  """'0,10,20,40,80' (edges) or [(lo, hi), ...] → ((lo, hi), ...) floats."""
  if isinstance(bins, str):
    try:
      edges = [float(v) for v in bins.split(',') if v.strip()]
    except ValueError:
      raise ValueError(f'bins: expected comma-separated numbers like "0,10,20,40,80", got {bins!r}') from None
    bins = list(zip(edges[:-1], edges[1:]))
  out = []
  for pair in bins:
    lo, hi = (float(v) for v in pair)
    if not hi > lo:
      raise ValueError(f'bins: expected increasing bin edges, got ({lo}, {hi})')
    out.append((lo, hi))
  return tuple(out)


def bin_name(lo, hi):
  return f'{lo:g}-{hi:g}'


# ----------------------------------------------------------------------------
# Per-sample metrics.


@functools.partial(jax.jit, static_argnames=('params',))
def sample_metrics(gt, inv_depth, inv_depth_flipped, params):
  """Every row (and bin) of every sample.

  Args:
    gt: [N,H,W,1] GT depth at its true size.
    inv_depth: [N,h,w,1] network output; inv_depth_flipped: output on the flipped image
      (unused without post-processing).
    params: MetricParams.

  Returns:
    {row: [N,7]}, {(row, bin): ([N,7], [N] bool has-pixels)}, ratio [N] (median GT / median raw
    prediction; 0 without valid pixels), valid [N] bool.
  """
  preds = {'depth': inv2depth(inv_depth)}
  if params.post_process:
    preds['depth_pp'] = inv2depth(metrics_lib.post_process_inv_depth(inv_depth, inv_depth_flipped))
  common = dict(min_depth=params.min_depth, max_depth=params.max_depth, crop=params.crop,
                scale_output=params.scale_output)
  rows, bins = {}, {}
  ratio = valid = None
  for name, pred in preds.items():
    for suffix, use_gt_scale in (('', False), ('_gt', True)):
      row = name + suffix
      rows[row], has, r = metrics_lib.depth_metrics_per_sample(gt, pred, use_gt_scale=use_gt_scale, **common)
      if row == 'depth':
        ratio, valid = r, has
      for lo, hi in params.bins:
        bins[(row, bin_name(lo, hi))] = metrics_lib.depth_metrics_per_sample(
            gt, pred, use_gt_scale=use_gt_scale, bin_min=lo, bin_max=hi, **common)[:2]
  rows['median_baseline_gt'] = metrics_lib.depth_metrics_per_sample(
      gt, jnp.ones_like(preds['depth']), use_gt_scale=True, **common)[0]
  return rows, bins, ratio, valid


class Accumulator:
  """Collects per-sample results (host numpy) and reduces them per group."""

  def __init__(self, params):
    self.params = params
    self.rows = {}       # row → list of [7]
    self.bins = {}       # (row, bin) → list of ([7], has)
    self.ratio, self.valid, self.group = [], [], []

  def add(self, rows, bins, ratio, valid, groups):
    for k, v in rows.items():
      self.rows.setdefault(k, []).extend(np.asarray(v, np.float64))
    for k, (m, has) in bins.items():
      self.bins.setdefault(k, []).extend(zip(np.asarray(m, np.float64), np.asarray(has)))
    self.ratio.extend(np.asarray(ratio, np.float64))
    self.valid.extend(np.asarray(valid, bool))
    self.group.extend(groups)

  @property
  def num_samples(self):
    return len(self.group)

  def _reduce(self, select):
    idx = np.flatnonzero(select)
    out = {'num_samples': int(len(idx))}
    for row, values in self.rows.items():
      mean = np.mean(np.asarray(values)[idx], axis=0) if len(idx) else np.full(7, np.nan)
      out[row] = dict(zip(metrics_lib.METRIC_NAMES, (float(v) for v in mean)))
    binned = {}
    for (row, name), values in self.bins.items():
      chosen = [values[i] for i in idx if values[i][1]]
      mean = np.mean([m for m, _ in chosen], axis=0) if chosen else np.full(7, np.nan)
      entry = dict(zip(metrics_lib.METRIC_NAMES, (float(v) for v in mean)))
      entry['num_samples'] = len(chosen)
      binned.setdefault(name, {})[row] = entry
    out['bins'] = binned
    ratios = np.asarray(self.ratio)[idx][np.asarray(self.valid, bool)[idx]]
    out['median_scale_ratio'] = float(np.median(ratios)) if len(ratios) else float('nan')
    return out

  def results(self):
    """JSON-ready dict: overall rows/bins/ratio/count, plus 'cameras' when there are several groups."""
    groups = np.asarray(self.group, dtype=object)
    out = self._reduce(np.ones(len(groups), bool))
    names = sorted(set(self.group))
    if len(names) > 1 or (names and names[0] != OVERALL):
      out['cameras'] = {name: self._reduce(groups == name) for name in names}
    p = self.params
    out['params'] = {'crop': p.crop, 'min_depth': p.min_depth, 'max_depth': p.max_depth,
                     'scale_output': p.scale_output, 'bins': [list(b) for b in p.bins],
                     'post_process': p.post_process}
    return out


# ----------------------------------------------------------------------------
# The evaluation loop.


def make_predict_fn(net, post_process=True):
  """pmapped (variables, rgb [D,B,H,W,3]) → (inv_depth, inv_depth of the flipped image), float32."""
  def predict(variables, rgb):
    if not post_process:
      inv = predict_lib.inv_depth(net, variables, rgb)
      return inv, inv
    return predict_lib.inv_depth_and_flipped(net, variables, rgb)
  return jax.pmap(predict, axis_name=device_layout.AXIS_NAME)


def camera_names(dataset_config):
  """Cameras to report separately: the split's `cameras` when it names several (DDAD), else ()."""
  cameras = dataset_config.get('cameras') or ()
  cameras = [cameras] if isinstance(cameras, str) else list(cameras)
  return tuple(cameras) if len(cameras) > 1 else ()


def camera_of(filename, cameras):
  """The camera name contained in a DDAD filename ('<scene>_<camera>_<stem>'), else 'overall'."""
  for cam in cameras:
    if f'_{cam.lower()}_' in filename:
      return cam.lower()
  return OVERALL


def _decode(name):
  return name.decode() if isinstance(name, bytes) else str(name)


def _batch_metrics(acc, batch, inv, inv_flipped, params, cameras):
  """Adds one pipeline batch ([D,B,...] numpy) to the accumulator."""
  n = inv.shape[0] * inv.shape[1]
  flat = device_layout.unshard
  inv, inv_flipped, gt = flat(inv), flat(inv_flipped), flat(batch['depth'])
  mask = flat(batch['mask']).astype(bool) if 'mask' in batch else np.ones(n, bool)
  hw = flat(batch['depth_hw']) if 'depth_hw' in batch else np.tile(gt.shape[1:3], (n, 1))
  names = [_decode(f) for f in flat(batch['filename'])] if 'filename' in batch else [''] * n
  real = np.flatnonzero(mask)
  # Samples with the same true GT size go through one call; padding to n keeps shapes (compiles) fixed.
  for size in sorted({tuple(hw[i]) for i in real}):
    idx = [i for i in real if tuple(hw[i]) == size]
    take = np.asarray(idx + [idx[0]] * (n - len(idx)))
    rows, bins, ratio, valid = jax.device_get(sample_metrics(
        gt[take, :size[0], :size[1]], inv[take], inv_flipped[take], params))
    k = len(idx)
    acc.add({r: v[:k] for r, v in rows.items()}, {b: (m[:k], h[:k]) for b, (m, h) in bins.items()},
            ratio[:k], valid[:k], [camera_of(names[i], cameras) for i in idx])


def evaluate(net, variables, batches, params, *, cameras=(), num_batches=None, max_batches=0,
             progress=True, on_batch=None):
  """Runs the depth net over an iterable of pipeline batches and returns the results dict.

  Args:
    net: Flax depth net (eval mode returns [B,H,W,1] inverse depth).
    variables: its variables (host or device arrays).
    batches: iterable of numpy dicts shaped [D, B, ...] (D = local devices) with 'rgb', 'depth',
      and optionally 'mask' (False = padding), 'depth_hw' (true GT size), 'filename'.
    params: MetricParams.
    cameras: camera names for per-camera results (DDAD).
    num_batches: total for the progress bar.
    max_batches: stop after this many batches (0 = all).
    on_batch: optional fn(batch, inv_depth [D,B,h,w,1] numpy) called after every batch
      (training logs depth images with it).

  Returns:
    results dict (see `Accumulator.results`).
  """
  predict = make_predict_fn(net, params.post_process)
  replicated = None
  acc = Accumulator(params)
  bar = _progress(num_batches, progress)
  for i, batch in enumerate(batches):
    if max_batches and i >= max_batches:
      break
    if 'depth' not in batch:
      raise ValueError('batch: no "depth" key; evaluation needs a split with ground-truth depth '
                       '(set datasets.<split>.depth_type)')
    if batch['rgb'].shape[0] != jax.local_device_count():
      raise ValueError(f'batch: leading axis {batch["rgb"].shape[0]} is not the '
                       f'{jax.local_device_count()} local devices')
    if replicated is None:
      replicated = device_layout.replicate(variables)
    inv, inv_flipped = jax.device_get(predict(replicated, batch['rgb']))
    _batch_metrics(acc, batch, inv, inv_flipped, params, cameras)
    if on_batch is not None:
      on_batch(batch, inv)
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  return _gather_hosts(acc).results()


def _progress(total, enabled):
  if not enabled:
    return None
  try:
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return tqdm(total=total, desc='eval', unit='batch', disable=jax.process_index() != 0)


def _gather_hosts(acc):
  """With several processes, every host gets all hosts' samples (padded lists are equal-length)."""
  if jax.process_count() == 1:
    return acc
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  import pickle  # pylint: disable=import-outside-toplevel
  blob = np.frombuffer(pickle.dumps(acc.__dict__), np.uint8)
  size = int(np.max(multihost_utils.process_allgather(np.asarray([blob.size]))))
  padded = np.zeros(size, np.uint8)
  padded[:blob.size] = blob
  sizes = multihost_utils.process_allgather(np.asarray([blob.size]))
  blobs = multihost_utils.process_allgather(padded)
  merged = Accumulator(acc.params)
  for blob, n in zip(np.asarray(blobs).reshape(-1, size), np.asarray(sizes).reshape(-1)):
    part = pickle.loads(blob[:n].tobytes())
    for k, v in part['rows'].items():
      merged.rows.setdefault(k, []).extend(v)
    for k, v in part['bins'].items():
      merged.bins.setdefault(k, []).extend(v)
    merged.ratio.extend(part['ratio'])
    merged.valid.extend(part['valid'])
    merged.group.extend(part['group'])
  return merged
