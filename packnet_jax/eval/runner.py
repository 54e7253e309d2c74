"""Depth evaluation over a dataset split: one exact, batched, pmapped pass.

For every real sample (the pipeline pads the last batches and marks them with
`mask`) the depth net runs on the image and on its horizontal flip; the
reference's four rows are computed per sample (SPEC §5):

  depth        raw prediction              depth_gt     raw, GT-median-scaled
  depth_pp     flip post-processed         depth_pp_gt  post-processed, GT-median-scaled

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
from packnet_jax.geometry.depth import inv2depth

ROWS = ('depth', 'depth_pp', 'depth_gt', 'depth_pp_gt')
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
    """From an ml_collections config (`model.params`, `eval.post_process`, `eval.distance_bins`)."""
    params = config.model.params
    ev = config.get('eval', {}) or {}
    if bins is None:
      bins = ev.get('distance_bins', None) or DEFAULT_BINS
    return cls(crop=params.crop, min_depth=float(params.min_depth), max_depth=float(params.max_depth),
               scale_output=params.scale_output, bins=parse_bins(bins),
               post_process=bool(ev.get('post_process', True)))


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


def make_predict_fn(model, post_process=True):
  """pmapped (variables, rgb [D,B,H,W,3]) → (inv_depth, inv_depth of the flipped image), float32."""
  def predict(variables, rgb):
    inv = jnp.asarray(model.apply(variables, rgb, train=False), jnp.float32)
    if not post_process:
      return inv, inv
    inv_flipped = jnp.asarray(model.apply(variables, rgb[:, :, ::-1], train=False), jnp.float32)
    return inv, inv_flipped
  return jax.pmap(predict, axis_name='batch')


def replicate(tree, devices):
  """Copies every leaf onto each device once, as a [D, ...] array sharded along its first axis."""
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), ('d',)),
                                        jax.sharding.PartitionSpec('d'))
  return jax.tree_util.tree_map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices),) + np.shape(x)), sharding), tree)


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
  flat = lambda x: np.asarray(x).reshape((n,) + np.asarray(x).shape[2:])
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


def evaluate(model, variables, batches, params, *, cameras=(), num_batches=None, progress=True,
             keep_predictions=False):
  """Runs the depth net over an iterable of pipeline batches and returns the results dict.

  Args:
    model: Flax depth net (eval mode returns [B,H,W,1] inverse depth).
    variables: its variables.
    batches: iterable of numpy dicts shaped [D, B, ...] with 'rgb', 'depth', and optionally
      'mask' (False = padding), 'depth_hw' (true GT size), 'filename'.
    params: MetricParams.
    cameras: camera names for per-camera results (DDAD).
    num_batches: total for the progress bar.
    keep_predictions: also return the real samples' (inv_depth, inv_depth_flipped) in order.

  Returns:
    results dict (see `Accumulator.results`), and the predictions list if keep_predictions.
  """
  predict = None
  acc = Accumulator(params)
  kept = []
  bar = _progress(num_batches, progress)
  for batch in batches:
    if 'depth' not in batch:
      raise ValueError('batch: no "depth" key; evaluation needs a split with ground-truth depth '
                       '(set datasets.<split>.depth_type)')
    num_devices = batch['rgb'].shape[0]
    if predict is None:
      devices = jax.local_devices()[:num_devices]
      if len(devices) != num_devices:
        raise ValueError(f'batch: leading axis {num_devices} exceeds the {len(devices)} local devices')
      predict = make_predict_fn(model, params.post_process)
      replicated = replicate(variables, devices)
    inv, inv_flipped = jax.device_get(predict(replicated, batch['rgb']))
    _batch_metrics(acc, batch, inv, inv_flipped, params, cameras)
    if keep_predictions:
      mask = np.asarray(batch.get('mask', np.ones(inv.shape[:2], bool))).reshape(-1).astype(bool)
      kept.extend(zip(inv.reshape((-1,) + inv.shape[2:])[mask], inv_flipped.reshape((-1,) + inv.shape[2:])[mask]))
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  results = _gather_hosts(acc).results()
  return (results, kept) if keep_predictions else results


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


# ----------------------------------------------------------------------------
# Loading.


@dataclasses.dataclass
class DepthModel:
  """A depth net ready for `evaluate`: module, variables, and where they came from."""
  model: object
  variables: dict
  source: str
  model_config: dict = dataclasses.field(default_factory=dict)


def load_depth_model(checkpoint, config=None, dtype='float32'):
  """Loads the depth net of a `.ckpt` file, a converted directory or a training workdir.

  Args:
    checkpoint: path. A training workdir (orbax checkpoints, latest step) needs `config`
      (an ml_collections config naming the depth net).
    config: experiment config or None.
    dtype: compute dtype name ('float32' | 'bfloat16').
  """
  path = os.fspath(checkpoint)
  if os.path.isfile(path) or os.path.isfile(os.path.join(path, 'model_config.json')):
    from packnet_jax import api  # pylint: disable=import-outside-toplevel
    loaded = api.load_model(path, dtype=dtype)
    if loaded.depth_net is None:
      raise ValueError(f'{path}: checkpoint has no depth_net weights; nothing to evaluate')
    return DepthModel(loaded.depth_net, loaded.variables['depth'], path, loaded.config)
  if not os.path.isdir(path):
    raise ValueError(f'--checkpoint: {path} not found (expected a .ckpt file, a converted directory or a '
                     'training workdir)')
  if config is None:
    raise ValueError(f'--config: required to evaluate the training workdir {path}')
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  net = config.model.depth_net
  model = registry.build_depth_net(net.name, net.version or None, dtype=jnp.dtype(dtype))
  variables, step = restore_workdir_depth_variables(path)
  return DepthModel(model, variables, f'{path} (step {step})')


def restore_workdir_depth_variables(workdir):
  """{'params', 'batch_stats'?} of the depth net in a training workdir's latest checkpoint, and its step."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import checkpointing  # pylint: disable=import-outside-toplevel
  folder = os.path.join(os.path.abspath(workdir), checkpointing.CHECKPOINT_DIR)
  if not os.path.isdir(folder):
    raise ValueError(f'--checkpoint: {workdir} is neither a converted model directory nor a training workdir '
                     f'(no {checkpointing.CHECKPOINT_DIR}/ folder)')
  manager = checkpointing.create_manager(workdir, async_save=False)
  step = checkpointing.latest_step(manager)
  if step is None:
    raise ValueError(f'--checkpoint: {folder} holds no complete checkpoint')
  tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  params = tree.get('params') or {}
  if 'depth_net' not in params:
    raise ValueError(f'{folder}/{step}: no params/depth_net in the checkpoint (keys: {sorted(params)})')
  variables = {'params': params['depth_net']}
  stats = (tree.get('batch_stats') or {}).get('depth_net')
  if stats:
    variables['batch_stats'] = stats
  return variables, int(step)


def dataset_config(config, split):
  """The data pipeline's flat config of one split: datasets.augmentation merged with datasets.<split>."""
  if split not in config.datasets:
    raise ValueError(f'--split: expected one of train/validation/test, got {split!r}')
  merged = dict(config.datasets.augmentation.to_dict())
  merged.update(config.datasets[split].to_dict())
  return merged


# ----------------------------------------------------------------------------
# Output.


def format_table(results, title=''):
  """Text table of the four rows (and bins) of every group; numbers as in the JSON (4 decimals)."""
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
  import json  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import io as io_utils  # pylint: disable=import-outside-toplevel
  text = json.dumps(results, indent=2, sort_keys=True, allow_nan=True)
  io_utils.atomic_write_text(os.fspath(path), text + '\n')
