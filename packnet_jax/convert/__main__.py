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

from packnet_jax import cli


def parse_flags(argv):
  """Parses argv (program name first) into a private absl FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('checkpoint', None, 'PackNet-SfM .ckpt / .pth.tar / state dict, or a torchvision '
                      'ResNet .pth (ImageNet weights)', flag_values=fv, required=True)
  flags.DEFINE_string('output', None, 'converted model directory to write', flag_values=fv, required=True)
  flags.DEFINE_bool('overwrite', False, 'replace an existing output directory', flag_values=fv)
  fv(argv)
  return fv


def _run(fv):
  from packnet_jax.convert import converter  # pylint: disable=import-outside-toplevel
  model = converter.convert_checkpoint(fv.checkpoint)
  output = converter.save_converted(model, fv.output, overwrite=fv.overwrite)
  for message in model.messages:
    print(message)
  print(f'wrote {output}')
  return 0


def main(argv=None):
  """CLI entry point (also the console script `packnet-convert`); argv has the program name first."""
  return cli.run_main(parse_flags, _run, argv)


if __name__ == '__main__':
  sys.exit(main())
