"""What every command-line tool shares: absl flags with one name per thing, and one-line errors.

`eval`, `infer`, `export` and `convert` each parse their own private
`flags.FlagValues` (so they can be called in-process with an argv list, program
name first) and run through `run_main`, which turns a ValueError or a flag
error into a single `error: ...` line and a non-zero exit status. `main`
(training) is an absl app with the same flag names.
"""
import sys

from absl import flags

from packnet_jax.utils import xla_flags

EXIT_ERROR = 1
MODEL_SOURCE_HELP = ('released .ckpt, converted directory (python -m packnet_jax.convert) or training '
                     'workdir (python -m packnet_jax.main --workdir)')


def define_checkpoint(fv):
  """--checkpoint (any model source) and --step (a workdir's checkpoint)."""
  flags.DEFINE_string('checkpoint', None, MODEL_SOURCE_HELP, flag_values=fv, required=True)
  flags.DEFINE_integer('step', None, 'training workdir only: checkpoint step (default: the newest '
                       'complete one)', flag_values=fv)


def define_dtype(fv, default='float32'):
  flags.DEFINE_enum('dtype', default, ['float32', 'bfloat16', 'float16'],
                    'compute dtype (parameters stay float32)', flag_values=fv)


def define_image_shape(fv, help_text='H,W network input size, multiples of 32 (default: the '
                       "checkpoint's training shape)"):
  flags.DEFINE_string('image_shape', None, help_text, flag_values=fv)


def parse_image_shape(text, flag='--image_shape'):
  """'H,W' → (H, W), positive multiples of 32; None stays None."""
  if text is None:
    return None
  try:
    height, width = (int(v) for v in text.replace(' ', '').split(','))
  except ValueError:
    raise ValueError(f'{flag}: expected "H,W" (two integers), got {text!r}') from None
  if height <= 0 or width <= 0 or height % 32 or width % 32:
    raise ValueError(f'{flag}: H and W must be positive multiples of 32, got {text!r}')
  return height, width


def run_main(parse, body, argv=None):
  """parse(argv) → flag values; body(flag values) → exit status. Errors become one line.

  Applies the CPU defaults for XLA first (see `utils.xla_flags`), before any
  computation initialises the backend.
  """
  xla_flags.apply_cpu_defaults()
  argv = list(sys.argv if argv is None else argv)
  try:
    return body(parse(argv)) or 0
  except (ValueError, flags.Error) as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_ERROR
