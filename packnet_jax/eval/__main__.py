"""Depth evaluation CLI.

  python -m packnet_jax.eval --checkpoint PATH --config=configs/kitti.py [--output_json F]
      [--split test|validation] [--bins 0,10,20,40,80] [--batch_size N] [--dtype bfloat16]
      [--config.datasets.test.path=/data/KITTI_raw ...]

PATH is a released `.ckpt`, a converted directory or a training workdir (its
latest orbax checkpoint; the config then names the depth net). The split's
dataset, depth type, crop and depth range come from the config. Prints the
table (four reference rows, distance bins, per camera for DDAD) and writes the
same numbers as JSON.
"""
import os
import sys

from absl import flags
from ml_collections import config_flags


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('checkpoint', None, '.ckpt file, converted directory or training workdir',
                      flag_values=fv, required=True)
  config_flags.DEFINE_config_file('config', None, 'experiment config file (configs/*.py)', flag_values=fv,
                                  lock_config=False, sys_argv=list(argv))
  flags.DEFINE_string('output_json', None, 'also write the results as JSON here', flag_values=fv)
  flags.DEFINE_enum('split', 'test', ['test', 'validation'], 'dataset split of the config', flag_values=fv)
  flags.DEFINE_string('bins', None, 'distance-bin edges in metres (default 0,10,20,40,80 or '
                      'config.eval.distance_bins)', flag_values=fv)
  flags.DEFINE_integer('batch_size', 0, 'per-device batch (0: the split\'s batch_size)', flag_values=fv)
  flags.DEFINE_string('dtype', None, 'compute dtype (default: config.compute_dtype)', flag_values=fv)
  flags.DEFINE_bool('progress', True, 'show a progress bar', flag_values=fv)
  fv(argv)
  if fv.config is None:
    raise ValueError('--config: required (e.g. --config=configs/kitti.py)')
  return fv


def run_eval(fv):
  """Evaluates and returns the results dict (also printed / written)."""
  import jax  # pylint: disable=import-outside-toplevel
  from packnet_jax import data  # pylint: disable=import-outside-toplevel
  from packnet_jax.eval import runner  # pylint: disable=import-outside-toplevel

  config = fv.config
  if fv.output_json:  # Fail before evaluating if the JSON cannot be written.
    from packnet_jax.utils import io as io_utils  # pylint: disable=import-outside-toplevel
    io_utils.ensure_writable_dir(os.path.dirname(os.path.abspath(fv.output_json)), '--output_json')
  params = runner.MetricParams.from_config(config, bins=fv.bins)
  dtype = fv.dtype or config.get('compute_dtype', 'float32')
  loaded = runner.load_depth_model(fv.checkpoint, config=config, dtype=dtype)
  ds_config = runner.dataset_config(config, fv.split)
  batch_size = fv.batch_size or int(ds_config.get('batch_size', 1))
  dataset = data.build_dataset(ds_config, fv.split, batch_size=batch_size, num_devices=jax.local_device_count())
  num_batches = int(dataset.cardinality())
  cameras = ds_config.get('cameras') or ()
  cameras = [cameras] if isinstance(cameras, str) else list(cameras)
  results = runner.evaluate(loaded.model, loaded.variables, dataset.as_numpy_iterator(), params,
                            cameras=cameras if len(cameras) > 1 else (),
                            num_batches=num_batches if num_batches > 0 else None, progress=fv.progress)
  results['checkpoint'] = loaded.source
  results['split'] = fv.split
  results['dataset'] = {k: ds_config.get(k) for k in ('dataset', 'path', 'split', 'depth_type')}
  if jax.process_index() == 0:
    print(runner.format_table(results, title=f'{fv.split}'))
    if fv.output_json:
      runner.write_json(fv.output_json, results)
      print(f'wrote {fv.output_json}')
  return results


def main(argv=None):
  argv = sys.argv if argv is None else argv
  try:
    fv = parse_flags(argv)
    run_eval(fv)
  except (ValueError, flags.Error) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
