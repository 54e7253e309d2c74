r"""Depth evaluation CLI.

  python -m packnet_jax.eval --checkpoint WORKDIR --split validation
  python -m packnet_jax.eval --checkpoint PackNet01_MR_selfsup_K.ckpt --config=configs/kitti.py \
      --config.datasets.test.path=/data/KITTI_raw [--output metrics.json] [--split test|validation]
      [--bins 0,10,20,40,80] [--batch_size N] [--dtype bfloat16] [--step N|best]

--checkpoint is a released `.ckpt`, a converted directory or a training
workdir (its newest complete checkpoint, or --step). The dataset split, depth
range, crop and bins come from the experiment config: a workdir's own
config.json by default, or --config (a configs/*.py file, with any
--config.<key>=<value> overrides) to evaluate on another dataset. Prints the
table (reference rows, constant-depth baseline, distance bins, per camera for
DDAD) and writes the same numbers as JSON with --output. A split with several
datasets gets one table per dataset, and a JSON keyed by the reference's
dataset prefix (as the training run's validation.json).
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from packnet_jax import cli


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  cli.define_checkpoint(fv)
  cli.define_dtype(fv, default=None)
  config_flags.DEFINE_config_file('config', None, 'experiment config file (configs/*.py); default: the '
                                  "training workdir's config.json", flag_values=fv, lock_config=True,
                                  sys_argv=list(argv))
  flags.DEFINE_string('output', None, 'also write the results as JSON here', flag_values=fv)
  flags.DEFINE_alias('output_json', 'output', flag_values=fv)
  flags.DEFINE_enum('split', 'test', ['test', 'validation'], 'dataset split of the config', flag_values=fv)
  flags.DEFINE_string('bins', None, 'distance-bin edges in metres (default: config.eval.distance_bins, '
                      'else 0,10,20,40,80)', flag_values=fv)
  flags.DEFINE_integer('batch_size', 0, "per-device batch (0: the split's batch_size)", flag_values=fv)
  flags.DEFINE_bool('progress', True, 'show a progress bar', flag_values=fv)
  fv(argv)
  return fv


def experiment_config(fv):
  """--config (validated) or, for a training workdir, the config.json it holds."""
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  from packnet_jax.workdir import run_files as workdir  # pylint: disable=import-outside-toplevel
  if fv.config is not None:
    return config_utils.validate_config(fv.config)
  if workdir.is_workdir(fv.checkpoint):
    return workdir.read_config(fv.checkpoint)
  raise ValueError('--config: required for a .ckpt or a converted directory (it names the dataset to '
                   'evaluate on, e.g. --config=configs/kitti.py)')


def run_eval(fv):
  """Evaluates and returns the results dict (also printed / written)."""
  import jax  # pylint: disable=import-outside-toplevel
  from packnet_jax import api  # pylint: disable=import-outside-toplevel
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  from packnet_jax.data import dataset_list  # pylint: disable=import-outside-toplevel
  from packnet_jax.eval import report  # pylint: disable=import-outside-toplevel
  from packnet_jax.eval import runner  # pylint: disable=import-outside-toplevel
  from packnet_jax.eval import split_eval  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import io as io_utils  # pylint: disable=import-outside-toplevel

  config = experiment_config(fv)
  if fv.output:  # Fail before evaluating if the JSON cannot be written.
    io_utils.ensure_writable_dir(os.path.dirname(os.path.abspath(fv.output)), '--output')
  params = runner.MetricParams.from_config(config, bins=fv.bins)
  model = api.load_model(fv.checkpoint, dtype=fv.dtype or config.compute_dtype, step=fv.step)
  if model.depth_net is None:
    raise ValueError(f'{fv.checkpoint}: checkpoint has no depth_net weights; nothing to evaluate')
  ds_config = config_utils.dataset_config(config, fv.split)
  batch_size = fv.batch_size or int(ds_config['batch_size'])
  results = split_eval.evaluate_split(model.depth_net, model.variables['depth'], ds_config, fv.split, params,
                                      batch_size=batch_size, progress=fv.progress)
  configs = dict(zip(split_eval.prefixes(ds_config, fv.split),
                     dataset_list.expand(ds_config, f'datasets.{fv.split}')))
  for prefix, res in split_eval.per_dataset(results):
    one = configs[prefix] if prefix else configs[next(iter(configs))]
    res['checkpoint'] = model.source
    res['split'] = fv.split
    res['dataset'] = {k: one[k] for k in ('dataset', 'path', 'split', 'depth_type')}
  if jax.process_index() == 0:
    for prefix, res in split_eval.per_dataset(results):
      print(report.format_table(res, title=f'{fv.split} {prefix}'.strip()))
    if fv.output:
      report.write_json(fv.output, results)
      print(f'wrote {fv.output}')
  return results


def main(argv=None):
  return cli.run_main(parse_flags, lambda fv: run_eval(fv) and 0, argv)


if __name__ == '__main__':
  sys.exit(main())
