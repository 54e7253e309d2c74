"""CLI: python -m packnet_jax.convert --checkpoint FILE --output DIR [--overwrite].

FILE is a PackNet-SfM `.ckpt` / `.pth.tar` / state dict, or torchvision's
ImageNet ResNet file (`resnet18-f37072fd.pth`, `resnet34-b627a593.pth`,
`resnet50-0676ba61.pth`), which gives an encoder-only directory for
`model.<net>.pretrained_encoder`.

Writes DIR/variables (orbax) and DIR/model_config.json atomically, and prints
what was converted, which keys were unused, and which nets had no weights.
Exit status 1 with one `error: ...` line for bad input (unknown architecture,
missing required key, unreadable or truncated file, ...); nothing is written.
"""
import sys

from absl import flags


def parse_flags(argv):
  """Parses argv (program name first) into a private absl FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('checkpoint', None, 'PackNet-SfM .ckpt / .pth.tar / state dict, or a torchvision '
                      'ResNet .pth (ImageNet weights)', flag_values=fv, required=True)
  flags.DEFINE_string('output', None, 'converted model directory to write', flag_values=fv, required=True)
  flags.DEFINE_bool('overwrite', False, 'replace an existing output directory', flag_values=fv)
  fv(argv)
  return fv


def main(argv=None):
  """Runs the conversion; `argv` excludes the program name (default sys.argv[1:])."""
  argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
  if '--help' in argv or '-h' in argv:
    print(__doc__ + '\nFlags:\n' + parse_flags(['packnet_jax.convert', '--checkpoint=', '--output=']).get_help())
    return 0
  try:
    fv = parse_flags(['packnet_jax.convert'] + argv)
    from packnet_jax.convert import converter  # pylint: disable=import-outside-toplevel
    model = converter.convert_checkpoint(fv.checkpoint)
    output = converter.save_converted(model, fv.output, overwrite=fv.overwrite)
  except (ValueError, flags.Error) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  for message in model.messages:
    print(message)
  print(f'wrote {output}')
  return 0


run = main  # console script `packnet-convert` (setup.cfg)


if __name__ == '__main__':
  sys.exit(main())
