"""Evaluation of every dataset of a split, each on its own (the reference's per-dataset validation).

Training validation and the eval CLI both call `evaluate_split`, so the numbers
a run logs are the numbers `python -m packnet_jax.eval --split validation`
prints. A split with one dataset gives the results dict as before (no prefix:
`val/depth_gt/abs_rel`, validation.json's top-level rows); a split with several
gives `{prefix: results}`, the prefix being the reference's
(`KITTI_raw-eigen_val_files-velodyne`, see `data.dataset_list.prefix`).
"""
import jax

from packnet_jax.data import config as data_config
from packnet_jax.data import dataset_list
from packnet_jax.eval import report
from packnet_jax.eval import runner


def prefixes(ds_config, split):
  """The datasets' prefixes in config order; a repeated prefix gets its index appended ('-1')."""
  names = [dataset_list.prefix(one) for one in dataset_list.expand(ds_config, f'datasets.{split}')]
  return [f'{name}-{i}' if names.count(name) > 1 else name for i, name in enumerate(names)]


is_multi = report.is_multi
per_dataset = report.per_dataset


def evaluate_split(net, variables, ds_config, split, params, *, batch_size, max_batches=0, progress=False,
                   on_batch=None):
  """Evaluates each dataset of `ds_config` (a `config_utils.dataset_config`) separately.

  Args:
    on_batch: optional fn(prefix, batch, inv_depth), called after every batch.

  Returns:
    One results dict (one dataset) or {prefix: results dict} (several).
  """
  configs = dataset_list.expand(ds_config, f'datasets.{split}')
  out = {}
  for prefix, one in zip(prefixes(ds_config, split), configs):
    dataset = data_config.build_dataset(one, split, batch_size=batch_size, num_devices=jax.local_device_count())
    num_batches = int(dataset.cardinality())
    callback = None if on_batch is None else (lambda batch, inv, p=prefix: on_batch(p, batch, inv))
    out[prefix] = runner.evaluate(
        net, variables, dataset.as_numpy_iterator(), params, cameras=runner.camera_names(one),
        num_batches=num_batches if num_batches > 0 else None, max_batches=max_batches, progress=progress,
        on_batch=callback)
  return next(iter(out.values())) if len(out) == 1 else out
