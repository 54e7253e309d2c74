"""CLI: python -m packnet_jax.convert --checkpoint X.ckpt --output DIR [--overwrite].

Writes DIR/variables (orbax) and DIR/model_config.json, and prints which
networks were converted, which keys were unused, and which nets had no weights.
Exit status 1 with a one-line error for bad input (unknown architecture,
missing required key, unreadable file, ...).
"""
import argparse
import sys


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog='python -m packnet_jax.convert', description=__doc__.split('\n')[0])
  parser.add_argument('--checkpoint', required=True, help='PackNet-SfM .ckpt / .pth.tar / state-dict file')
  parser.add_argument('--output', required=True, help='converted model directory to write')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing output directory')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  from packnet_jax.convert import converter  # pylint: disable=import-outside-toplevel
  try:
    model = converter.convert_checkpoint(args.checkpoint)
    output = converter.save_converted(model, args.output, overwrite=args.overwrite)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  for message in model.messages:
    print(message)
  print(f'wrote {output}')
  return 0


run = main  # console script `packnet-convert` (setup.cfg)

if __name__ == '__main__':
  sys.exit(main())
