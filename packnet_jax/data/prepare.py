r"""Dataset preparation CLI: TFDS records at the training resolution, KITTI velodyne depth maps.

  python -m packnet_jax.data.prepare records --dataset KITTI --root /data/KITTI_raw --output /data/tfds \
      --tfds_config eigen_zhou_velodyne_192x640 [--image_shape H,W]
  python -m packnet_jax.data.prepare velodyne --root /data/KITTI_raw [--cameras 2,3]

`records` decodes, crops and resizes every frame once (what the raw reader
does per sample) and writes TFDS records under --output; train from them with
`--config.datasets.train.tfds_data_dir=OUTPUT --config.datasets.train.tfds_config=NAME`.
--image_shape changes the named config's resolution and writes it as
`<name>_<H>x<W>` (printed at the end). `velodyne` projects every
`velodyne_points/data/N.bin` under the root into
`proj_depth/velodyne/image_0X/N.npz` (key `velodyne_depth`, TRI layout,
docs/reference.md §6.1).
"""
import os
import sys

from absl import flags

from packnet_jax import cli

DATASETS = ('KITTI', 'DDAD', 'Image')


def _define_root(fv):
  flags.DEFINE_string('root', None, 'dataset root (KITTI raw: the folder with the date folders)',
                      flag_values=fv, required=True)


def _check_root(root):
  if not os.path.isdir(root):
    raise ValueError(f'--root: dataset root not found: {root}')


def parse_records_flags(argv):
  """Parses argv (program name first) into a private FlagValues for `records`."""
  fv = flags.FlagValues()
  _define_root(fv)
  flags.DEFINE_enum('dataset', 'KITTI', list(DATASETS), 'dataset layout of --root', flag_values=fv)
  flags.DEFINE_string('output', None, 'TFDS data dir to write the records into', flag_values=fv,
                      required=True)
  flags.DEFINE_string('tfds_config', None, 'builder config (e.g. eigen_zhou_velodyne_192x640; default: '
                      "the dataset's first)", flag_values=fv)
  cli.define_image_shape(fv, "H,W training resolution, multiples of 32 (default: the config's)")
  fv(argv)
  return fv


def _run_records(fv):
  _check_root(fv.root)
  from packnet_jax.data import tfds_builders  # pylint: disable=import-outside-toplevel
  builder_cls = tfds_builders.BUILDERS[fv.dataset]
  names = [c.name for c in builder_cls.BUILDER_CONFIGS]
  config = fv.tfds_config or names[0]
  if config not in names:
    raise ValueError(f'--tfds_config: {fv.dataset} has no config {config!r} (expected one of {names})')
  overrides = {}
  shape = cli.parse_image_shape(fv.image_shape)
  if shape:
    overrides['image_shape'] = shape
  builder = tfds_builders.prepare(fv.dataset, fv.root, fv.output, config=config, **overrides)
  print(f'wrote {fv.dataset} records under {fv.output} (tfds_config={builder.builder_config.name})')
  return 0


def parse_velodyne_flags(argv):
  """Parses argv (program name first) into a private FlagValues for `velodyne`."""
  fv = flags.FlagValues()
  _define_root(fv)
  flags.DEFINE_list('cameras', ['2', '3'], 'KITTI camera indices to project into', flag_values=fv)
  fv(argv)
  return fv


def _run_velodyne(fv):
  _check_root(fv.root)
  try:
    cameras = tuple(int(c) for c in fv.cameras)
  except ValueError:
    raise ValueError(f'--cameras: expected integers such as 2,3, got {",".join(fv.cameras)!r}') from None
  from packnet_jax.data import projection  # pylint: disable=import-outside-toplevel
  print(f'wrote {projection.write_velodyne_depth_maps(fv.root, cameras)} depth maps under {fv.root}')
  return 0


JOBS = {'records': (parse_records_flags, _run_records), 'velodyne': (parse_velodyne_flags, _run_velodyne)}


def main(argv=None):
  """CLI entry point (also the console script `packnet-prepare`); argv has the program name first."""
  return cli.run_job(JOBS, argv, __doc__)


if __name__ == '__main__':
  sys.exit(main())
