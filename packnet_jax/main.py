r"""Training entry point.

  python -m packnet_jax.main --config=configs/kitti.py --workdir=/tmp/kitti \
      [--config.optim.depth.lr=1e-4 ...]

--workdir may be a bucket URL (gs://bucket/run, s3://bucket/run): the same
command on a fresh machine resumes from the bucket (see utils/storage.py).

Multi-host: pass --multihost (or set config.distributed.enabled=True); the
coordinator address / process count / process id come from the flags below or,
when omitted, from the cluster environment (SLURM, TPU pods, or
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID via
jax.distributed.initialize's auto-detection).
"""
import logging as logging_lib
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

# Configs import each other (`from configs import default`): `configs` is installed with the package
# (setup.cfg); without an install, the repository root (the working directory) provides it.
sys.path.insert(0, os.getcwd())

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, TensorBoard summaries; resumed if it has checkpoints. '
                    'A folder or a bucket URL (gs://bucket/run, s3://bucket/run).')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() before anything else.')
flags.DEFINE_string('coordinator_address', '', 'host:port of process 0 (multi-host).')
flags.DEFINE_integer('num_processes', -1, 'Number of processes (multi-host).')
flags.DEFINE_integer('process_id', -1, 'This process (multi-host).')
flags.mark_flags_as_required(['config', 'workdir'])


def _maybe_initialize_distributed(config):
  """jax.distributed.initialize() if asked, flags over config over environment."""
  import jax  # pylint: disable=import-outside-toplevel
  dist = config.distributed
  if not (FLAGS.multihost or dist.enabled):
    return
  kwargs = {}
  address = FLAGS.coordinator_address or dist.coordinator_address
  num = FLAGS.num_processes if FLAGS.num_processes >= 0 else dist.num_processes
  pid = FLAGS.process_id if FLAGS.process_id >= 0 else dist.process_id
  if address:
    kwargs['coordinator_address'] = address
  if num >= 0:
    kwargs['num_processes'] = num
  if pid >= 0:
    kwargs['process_id'] = pid
  jax.distributed.initialize(**kwargs)
  logging.info('jax.distributed: process %d of %d', jax.process_index(), jax.process_count())


def _maybe_enable_float64(config):
  """compute_dtype 'float64': jax_enable_x64 on now, before any array exists (ValueError off CPU)."""
  if config.compute_dtype != 'float64':
    return
  import jax  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  jax.config.update('jax_enable_x64', True)
  registry.check_float64()


class _QuietLibraries(logging_lib.Filter):
  """Drops orbax's per-checkpoint INFO chatter from the training log."""

  def filter(self, record):
    return record.levelno >= logging_lib.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    config = FLAGS.config
    config_utils.validate_config(config)
    _maybe_enable_float64(config)
    # A bucket URL is checked before the heavy imports: a bad one fails in seconds.
    from packnet_jax.utils import storage  # pylint: disable=import-outside-toplevel
    storage.use_bucket(FLAGS.workdir)
    if config.logging.wandb.enabled:  # the optional package, before any data or model work
      from packnet_jax.train import wandb_writer  # pylint: disable=import-outside-toplevel
      wandb_writer.import_wandb()
  except OSError:
    path = config_flags.get_config_filename(FLAGS['config'])
    sys.exit(f'error: --config: cannot load {path!r} (a configs/*.py file with get_config(); '
             'run from the repository root)')
  except ValueError as e:
    sys.exit(f'error: {e}')
  _maybe_initialize_distributed(config)
  from packnet_jax.train import train  # pylint: disable=import-outside-toplevel
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  except (ValueError, train.NonFiniteLossError) as e:
    sys.exit(f'error: {e}')


def _parse_flags(argv):
  """absl flag parsing with one-line errors (packnet_jax.cli.parse_config_flags)."""
  from packnet_jax import cli  # pylint: disable=import-outside-toplevel
  return cli.parse_config_flags(FLAGS, argv)


def run():
  """Console-script entry point (packnet-train)."""
  from packnet_jax.utils import xla_flags  # pylint: disable=import-outside-toplevel
  xla_flags.apply_cpu_defaults()
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
