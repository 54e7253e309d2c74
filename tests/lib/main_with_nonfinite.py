"""`python -m packnet_jax.main`, with the loss NaN at the steps of `--nonfinite_steps=1,2,3`.

    python tests/lib/main_with_nonfinite.py --nonfinite_steps=1,2,3 <packnet_jax.main's flags>

The test-only stand-in for the real command line in the tests of the non-finite
path (lib/nonfinite.py makes the steps NaN): the flag is taken out of argv
before absl parses main's flags, then main starts as its module entry point does.
It also registers lib.tiny_training's TinyDepthNet, so a test of the training
loop can run `--config.model.depth_net.name=TinyDepthNet` at a fraction of a real
depth net's compile time.
"""
import pathlib
import sys

FLAG = '--nonfinite_steps='
TESTS = pathlib.Path(__file__).resolve().parents[1]
# The repository (not this folder) first, as under `python -m` from the root; tests/ for `lib`.
sys.path[0:1] = [str(TESTS.parent), str(TESTS)]


def split_argv(argv):
  """(steps, argv without the flag)."""
  values = [a[len(FLAG):] for a in argv[1:] if a.startswith(FLAG)]
  if len(values) != 1:
    sys.exit(f'error: {argv[0]}: give {FLAG}S1,S2,... once')
  steps = tuple(int(s) for s in values[0].split(',') if s.strip())
  return steps, [argv[0]] + [a for a in argv[1:] if not a.startswith(FLAG)]


if __name__ == '__main__':
  steps, sys.argv = split_argv(sys.argv)
  from lib import nonfinite  # pylint: disable=import-outside-toplevel
  from lib import tiny_training  # pylint: disable=import-outside-toplevel
  from packnet_jax import main  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import train_step  # pylint: disable=import-outside-toplevel
  train_step.make_train_step = nonfinite.make_train_step(steps)
  tiny_training.register_tiny_net()
  main.run()
