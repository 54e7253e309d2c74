"""What every command-line tool shares: absl flags with one name per thing, and one-line errors.

`eval`, `infer`, `export`, `convert`, `data.prepare` and the tools each parse
their own private `flags.FlagValues` (so they can be called in-process with an
argv list, program name first) and run through `run_main` (or `run_job` for a
tool with several jobs), which applies the CPU defaults for XLA, answers
`--help`, and turns a ValueError or a flag error into a single `error: ...`
line and a non-zero exit status. `main` (training) is an absl app with the
same flag names, parsed by `parse_config_flags`.
"""
import contextlib
import re
import sys
import traceback

from absl import flags

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
  """--dtype, one of the model registry's compute dtypes."""
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel  (keeps cli light)
  flags.DEFINE_enum('dtype', default, list(registry.DTYPES),
                    'compute dtype (parameters stay float32)', flag_values=fv)


def define_image_shape(fv, help_text='H,W network input size, multiples of 32 (default: the '
                       "checkpoint's training shape)"):
  flags.DEFINE_string('image_shape', None, help_text, flag_values=fv)


def parse_hw(text, flag, multiple=1):
  """'H,W' → (H, W), positive multiples of `multiple`; None stays None."""
  if text is None:
    return None
  try:
    height, width = (int(v) for v in text.replace(' ', '').split(','))
  except ValueError:
    raise ValueError(f'{flag}: expected "H,W" (two integers), got {text!r}') from None
  if height <= 0 or width <= 0 or height % multiple or width % multiple:
    what = 'positive' if multiple == 1 else f'positive multiples of {multiple}'
    raise ValueError(f'{flag}: H and W must be {what}, got {text!r}')
  return height, width


def parse_image_shape(text, flag='--image_shape'):
  """A network input size 'H,W' → (H, W): positive multiples of 32 (PackNet's five 2x reductions)."""
  return parse_hw(text, flag, multiple=32)


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


def config_load_error(error):
  """One line for the OSError config_flags raises when a --config file cannot be loaded, else None."""
  text = str(error)
  if 'Configuration is not available' not in text:
    return None
  attempted = re.search(r'Attempted \[[^\]]*\]:\s*(\S+)', text)
  path = attempted.group(1) if attempted else '?'
  return f'--config: cannot load {path!r} (a configs/*.py file with get_config())'


def _override_key(arg):
  """'--config.optim.depth.lr=1e-4' → 'optim.depth.lr' (None for other arguments)."""
  if not arg.startswith('--config.'):
    return None
  return arg[len('--config.'):].split('=', 1)[0]


def check_config_keys(argv):
  """Raises ValueError naming the first `--config.KEY=...` in argv that configs/default.py lacks.

  Checked before absl parses, whose own message for it is a config_flags traceback.
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
        raise ValueError(f"config key '{key}': unknown (not in configs/default.py)")
      node = node[part]


def parse_config_flags(flag_values, argv):
  """absl flag parsing for a `--config` absl app (main), with one-line errors.

  An unknown `--config.KEY` is named before absl sees it; a config file that raises and a bad
  flag value become one `error:` line each.
  """
  try:
    check_config_keys(argv)
  except ValueError as e:
    sys.exit(f'error: {e}')
  try:
    return flag_values(argv)
  except CONFIG_FILE_ERRORS as e:
    sys.exit(f'error: {config_file_error(e)}')
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or ['bad flags']
    # A config file that raises embeds its traceback: keep the first and the exception line.
    sys.exit(f'error: {lines[0]}' + (f' {lines[-1]}' if len(lines) > 1 else ''))


HELP_FLAGS = ('--help', '-h', '--helpfull', '-help')


class _HelpRequested(Exception):
  def __init__(self, flag_values):
    super().__init__('help')
    self.flag_values = flag_values


@contextlib.contextmanager
def _capture_flag_values():
  """While active, the first FlagValues that parses an argv raises _HelpRequested instead.

  Lets `--help` list the flags a `parse` function defines without parsing (its
  required flags are missing), so the parse functions stay plain absl code.
  """
  original = flags.FlagValues.__call__

  def capture(fv, *args, **kwargs):
    raise _HelpRequested(fv)

  flags.FlagValues.__call__ = capture
  try:
    yield
  finally:
    flags.FlagValues.__call__ = original


def print_help(parse, argv):
  """The docstring of `parse`'s module, then the flags it defines."""
  module = sys.modules.get(getattr(parse, '__module__', ''), None)
  print((getattr(module, '__doc__', None) or '').strip() + '\n')
  try:
    with _capture_flag_values():
      parse([argv[0]])
  except _HelpRequested as requested:
    print('Flags:\n' + requested.flag_values.get_help(include_special_flags=False))


def run_main(parse, body, argv=None):
  """parse(argv) → flag values; body(flag values) → exit status. Errors become one line.

  Applies the CPU defaults for XLA first (see `utils.xla_flags`), before any
  computation initialises the backend.
  """
  xla_flags.apply_cpu_defaults()
  argv = [str(a) for a in (sys.argv if argv is None else argv)]
  if any(a in HELP_FLAGS for a in argv[1:]):
    print_help(parse, argv)
    return 0
  try:
    try:
      parsed = parse(argv)
    except CONFIG_FILE_ERRORS as e:
      raise ValueError(config_file_error(e)) from None
    try:
      return body(parsed) or 0
    except OSError as e:   # config_flags loads a --config file on first access
      if config_load_error(e) is None:
        raise
      raise ValueError(config_load_error(e)) from None
  except (ValueError, flags.Error) as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_ERROR


def run_job(jobs, argv=None, doc=''):
  """A tool with several jobs: `PROG JOB --flags...`; jobs maps name → (parse, body).

  The job's parse sees argv without the job name (program name first), so each
  job is an ordinary `run_main` tool; an unknown or missing job is one error line.
  """
  argv = [str(a) for a in (sys.argv if argv is None else argv)]
  names = ', '.join(jobs)
  if argv[1:2] and argv[1] in HELP_FLAGS:
    print(doc.strip() + f'\n\njobs: {names} (each takes --help)')
    return 0
  if argv[1:2] == [] or argv[1] not in jobs:
    job = repr(argv[1]) if argv[1:2] else 'missing'
    print(f'error: job {job}: expected one of {names} (then --help for its flags)', file=sys.stderr)
    return EXIT_ERROR
  parse, body = jobs[argv[1]]
  return run_main(parse, body, [f'{argv[0]} {argv[1]}'] + argv[2:])
