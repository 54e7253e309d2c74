"""What every command-line tool shares: absl flags with one name per thing, and one-line errors.

`eval`, `infer`, `export` and `convert` each parse their own private
`flags.FlagValues` (so they can be called in-process with an argv list, program
name first) and run through `run_main`, which turns a ValueError or a flag
error into a single `error: ...` line and a non-zero exit status. `main`
(training) is an absl app with the same flag names.
"""
import re
import sys
import traceback

from absl import flags

from packnet_jax.models import registry
from packnet_jax.utils import xla_flags

EXIT_ERROR = 1
MODEL_SOURCE_HELP = ('released .ckpt, converted directory (python -m packnet_jax.convert) or training '
                     'workdir (python -m packnet_jax.main --workdir)')


def define_checkpoint(fv):
  """--checkpoint (any model source) and --step (a workdir's checkpoint)."""
  flags.DEFINE_string('checkpoint', None, MODEL_SOURCE_HELP, flag_values=fv, required=True)
  flags.DEFINE(_StepParser(), 'step', None, 'training workdir only: checkpoint step (default: the newest '
               'complete one), or "best" (the best kept one by the run\'s checkpoint.monitor)', flag_values=fv)


class _StepParser(flags.ArgumentParser):
  """--step: a checkpoint step (int) or 'best'."""

  def parse(self, argument):
    if argument is None or isinstance(argument, int) or argument == 'best':
      return argument
    try:
      return int(argument)
    except ValueError:
      raise ValueError(f'expected a step number or "best", got {argument!r}') from None

  def flag_type(self):
    return 'step'



def define_dtype(fv, default='float32'):
  flags.DEFINE_enum('dtype', default, list(registry.DTYPES),
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


# What ml_collections raises when a config file sets a key the locked schema lacks, or a wrong type.
CONFIG_FILE_ERRORS = (AttributeError, KeyError, TypeError)


def config_file_error(error):
  """One line for an exception raised while a configs/*.py file built its config.

  Names the file, line and statement (e.g. `config.optim.depht = ...`), so a typo in a
  key is found at once, and keeps ml_collections' own explanation.
  """
  frames = [f for f in traceback.extract_tb(error.__traceback__) if '/ml_collections/' not in f.filename
            and '/absl/' not in f.filename and '/packnet_jax/' not in f.filename]
  where = f'{frames[-1].filename} line {frames[-1].lineno}: {frames[-1].line}: ' if frames else ''
  detail = str(error).strip().strip('\'"')
  unknown = re.match(r'Key "(\w+)" does not exist', detail)
  if unknown:
    hint = re.search(r'Did you mean "(\w+)"', detail)
    detail = (f'key {unknown.group(1)!r}: unknown (not in configs/default.py)'
              + (f'; did you mean {hint.group(1)!r}?' if hint else ''))
  return f'--config: {where}{detail.splitlines()[0]}'


def _override_key(arg):
  """'--config.optim.depth.lr=1e-4' → 'optim.depth.lr' (None for other arguments)."""
  if not arg.startswith('--config.'):
    return None
  return arg[len('--config.'):].split('=', 1)[0]


def parse_config_flags(flag_values, argv):
  """absl flag parsing for a `--config` tool (main, tools/compare_training.py), with one-line errors.

  An unknown `--config.KEY` is named before absl sees it; a config file that raises and a bad
  flag value become one `error:` line each.
  """
  import ml_collections  # pylint: disable=import-outside-toplevel
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  default = config_utils.default_config()
  for arg in argv[1:]:
    key = _override_key(arg)
    if key is None:
      continue
    node = default
    for part in key.split('.'):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        sys.exit(f"error: config key '{key}': unknown (not in configs/default.py)")
      node = node[part]
  try:
    return flag_values(argv)
  except CONFIG_FILE_ERRORS as e:
    sys.exit(f'error: {config_file_error(e)}')
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or ['bad flags']
    # A config file that raises embeds its traceback: keep the first and the exception line.
    sys.exit(f'error: {lines[0]}' + (f' {lines[-1]}' if len(lines) > 1 else ''))


def run_main(parse, body, argv=None):
  """parse(argv) → flag values; body(flag values) → exit status. Errors become one line.

  Applies the CPU defaults for XLA first (see `utils.xla_flags`), before any
  computation initialises the backend.
  """
  xla_flags.apply_cpu_defaults()
  argv = list(sys.argv if argv is None else argv)
  try:
    try:
      parsed = parse(argv)
    except CONFIG_FILE_ERRORS as e:
      raise ValueError(config_file_error(e)) from None
    return body(parsed) or 0
  except (ValueError, flags.Error) as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_ERROR
