"""Whole training runs of the port and of the PyTorch reference, side by side (docs/compare_training.md).

  python tools/make_synthetic_kitti.py --output /tmp/kitti_synth --frames 200
  python tools/compare_training.py --config=configs/demo.py:/tmp/kitti_synth \
      --config.datasets.augmentation.jittering='(0.2,0.2,0.2,0.05)' \
      --seeds=0,1,2 --steps=1500 --every=100 --output=/tmp/compare_resnet18

Both sides train from scratch with the same config: ours (a configs/*.py file and --config.KEY=VALUE
overrides) is carried over to the reference's yacs keys; both resolved configs are printed side by
side and the tool refuses to run if a compared setting differs (--ref.KEY=VALUE changes one on the
reference's side only, e.g. to check the refusal). Each (side, seed) run is its own process:
the port through packnet_jax.train, the reference through its own ModelWrapper on CPU torch
(--torch_source, default $PACKNET_SFM_SOURCE). Every --every steps (and at step 0) each side
validates with its own evaluation code. --output gets runs/ (finished runs, reused on re-runs with
the same settings), curves.json, curves.png and table.txt. torch and matplotlib are tool-only
dependencies (requirements-tools.txt).
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, 'tools')]

from absl import app  # noqa: E402  pylint: disable=wrong-import-position
from absl import flags  # noqa: E402  pylint: disable=wrong-import-position
from ml_collections import config_flags  # noqa: E402  pylint: disable=wrong-import-position

from compare import curves  # noqa: E402  pylint: disable=wrong-import-position
from compare import runner  # noqa: E402  pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py), as for packnet_jax.main.',
                                lock_config=True)
flags.DEFINE_string('output', None, 'Folder for runs/, curves.json, curves.png and table.txt (reused).')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'arch.seed of each run (the same seeds on both sides).')
flags.DEFINE_integer('steps', 1500, 'Training steps per run.')
flags.DEFINE_integer('every', 100, 'Validate every this many steps (and at step 0 and at the end).')
flags.DEFINE_list('sides', list(curves.SIDES), 'Which sides to run: port, reference or both.')
flags.DEFINE_string('torch_source', None, 'packnet-sfm checkout (default $PACKNET_SFM_SOURCE).')
flags.DEFINE_multi_string('ref', [], 'KEY=VALUE override of the reference yacs config only (refused if compared).')
flags.DEFINE_integer('jobs', 1, 'Runs at a time; > 1 pins each run to its own CPU core (2 on 2 cores).')
flags.DEFINE_integer('threads', 0, 'torch threads of the reference (0: the CPU count, as XLA uses; 1 with --jobs > 1).')
flags.mark_flags_as_required(['config', 'output'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from packnet_jax import cli  # pylint: disable=import-outside-toplevel
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  try:
    config = FLAGS.config
    config_utils.validate_config(config)  # a file that failed to load raises here, on first use
  except OSError:
    sys.exit(f'error: --config: cannot load {config_flags.get_config_filename(FLAGS["config"])!r} '
             '(a configs/*.py file with get_config())')
  except cli.CONFIG_FILE_ERRORS as e:
    sys.exit(f'error: {cli.config_file_error(e)}')
  except ValueError as e:
    sys.exit(f'error: {e}')
  try:
    seeds = [int(s) for s in FLAGS.seeds]
    runner.compare_main(config, FLAGS.output, seeds, FLAGS.steps, FLAGS.every, FLAGS.sides,
                        FLAGS.torch_source, FLAGS.ref, FLAGS.threads, FLAGS.jobs)
  except (ValueError, RuntimeError, OSError) as e:  # ValueError also from int() of a bad --seeds entry
    sys.exit(f'error: {e}')


def _parse_flags(argv):
  """absl flag parsing with one-line errors (packnet_jax.cli.parse_config_flags)."""
  from packnet_jax import cli  # pylint: disable=import-outside-toplevel
  return cli.parse_config_flags(FLAGS, argv)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
