"""TFDS builders: prepare a raw tree once as sharded records, read them back.

`prepare(dataset, manual_dir, data_dir, config)` (what `tfds build` does; the
builders are registered on import as `kitti_raw`, `ddad_dgp`, `image_folder`,
so `tfds.builder('kitti_raw/synthetic', data_dir=...)` also works once this
module is imported) converts the raw tree read by one of our readers into
records: each example holds the *untransformed* sample (PNG-encoded
frames, float64 intrinsics, native-size depth, poses), so the reference
transforms (LANCZOS, the jitter parameter draws) still run at training time
and give the same numbers as reading the raw tree. Records default to TFDS's `array_record`
format because training needs random access (`as_data_source`) for seeded
shuffling, per-host sharding and exact resume; `--file_format=tfrecord` also
builds but can then only be streamed with `as_dataset`.

Builders: `KittiRaw` (MANUAL_DIR = KITTI raw root with the split files),
`DdadDgp` (MANUAL_DIR = folder of the DGP dataset JSON), `ImageFolder`
(MANUAL_DIR = folder of image sequences). Configs fix the depth type and
context sizes because TFDS features have fixed structure.
"""
import dataclasses
import inspect
import os

import numpy as np
from PIL import Image

from packnet_jax.data import _tf  # noqa: F401  (TF on CPU before TFDS loads it)
import tensorflow_datasets as tfds

from packnet_jax.data import ddad
from packnet_jax.data import folder
from packnet_jax.data import kitti
from packnet_jax.data import transforms


@dataclasses.dataclass
class RawTreeConfig(tfds.core.BuilderConfig):
  """splits: TFDS split name → reader split (split file, DGP split, ...)."""
  splits: dict = dataclasses.field(default_factory=dict)
  depth_type: str = ''
  back_context: int = 0
  forward_context: int = 0
  with_pose: bool = False
  cameras: tuple = ()
  # Training resolution (H, W): each example is stored after the train
  # transform's crop (crop_borders) and LANCZOS resize, frames as zlib'ed
  # uint8 arrays, so reading inflates small frames and resizes nothing.
  # Train splits only (evaluation keeps the native size).
  # () = native size (PNG frames), transforms at read time.
  image_shape: tuple = ()
  crop_borders: tuple = ()


class _RawTreeBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared logic: one of our readers → TFDS examples."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.1.0': 'Examples in split order (record i = reader sample i); optional training resolution.',
  }

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  # TFDS's default looks the module up through `importlib_resources`, which
  # the pinned environment lacks; the source file path is all it needs.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return tfds.core.Path(inspect.getfile(cls))

  def _make_reader(self, manual_dir, split):
    raise NotImplementedError

  def _info(self):
    cfg = self.builder_config
    n_ctx = cfg.back_context + cfg.forward_context
    features = {
        'idx': np.int64,
        'filename': tfds.features.Text(),
        'intrinsics': tfds.features.Tensor(shape=(3, 3), dtype=np.float64, encoding='bytes'),  # exact f64
    }
    if cfg.image_shape:
      # Training resolution: zlib-compressed uint8 arrays, lossless like PNG
      # but ~2.5x faster to read (no PNG unfiltering) for ~1.4x the bytes.
      h, w = cfg.image_shape
      features['rgb'] = tfds.features.Tensor(shape=(h, w, 3), dtype=np.uint8, encoding='zlib')
      if n_ctx:
        features['rgb_context'] = tfds.features.Tensor(shape=(n_ctx, h, w, 3), dtype=np.uint8, encoding='zlib')
    else:
      features['rgb'] = tfds.features.Image(shape=(None, None, 3), encoding_format='png')
      if n_ctx:
        features['rgb_context'] = tfds.features.Sequence(
            tfds.features.Image(shape=(None, None, 3), encoding_format='png'), length=n_ctx)
    if cfg.crop_borders:  # The train transform's crop keeps the uncropped intrinsics too.
      features['intrinsics_full'] = tfds.features.Tensor(shape=(3, 3), dtype=np.float64, encoding='bytes')
    if cfg.depth_type:
      features['depth'] = tfds.features.Tensor(shape=(None, None, 1), dtype=np.float32, encoding='zlib')
    if cfg.with_pose:
      features['pose'] = tfds.features.Tensor(shape=(4, 4), dtype=np.float32)
      if n_ctx:
        features['pose_context'] = tfds.features.Tensor(shape=(n_ctx, 4, 4), dtype=np.float32)
    metadata = tfds.core.MetadataDict(image_shape=list(cfg.image_shape), crop_borders=list(cfg.crop_borders))
    # Record i must be the reader's sample i (seeded shuffling, shuffle=False
    # and equality with the raw tree all index by it), so TFDS must not
    # reorder the examples by key hash.
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features), metadata=metadata,
                                          disable_shuffling=True)

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    cfg = self.builder_config
    if cfg.image_shape and set(cfg.splits) != {'train'}:
      raise ValueError(f'{cfg.name}: records at training resolution (image_shape={tuple(cfg.image_shape)}) '
                       f'hold a train split only, got splits {sorted(cfg.splits)}')
    return {name: self._generate_examples(self._make_reader(manual_dir, split))
            for name, split in cfg.splits.items()}

  def _generate_examples(self, reader):
    cfg = self.builder_config
    for i in range(len(reader)):
      raw = reader.load(i)
      if cfg.image_shape:
        raw = transforms.prepare_train_resolution(raw, tuple(cfg.image_shape), tuple(cfg.crop_borders))
      example = {'idx': i, 'filename': raw['filename'], 'rgb': np.asarray(raw['rgb']),
                 'intrinsics': np.asarray(raw['intrinsics'], np.float64)}
      if 'intrinsics_full' in self.info.features:
        example['intrinsics_full'] = np.asarray(raw['intrinsics_full'], np.float64)
      if 'rgb_context' in self.info.features:
        frames = [np.asarray(im) for im in raw['rgb_context']]
        example['rgb_context'] = np.stack(frames) if cfg.image_shape else frames
      if 'depth' in self.info.features:
        example['depth'] = np.asarray(raw['depth'], np.float32)
      if 'pose' in self.info.features:
        example['pose'] = raw['pose']
      if 'pose_context' in self.info.features:
        example['pose_context'] = np.stack(raw['pose_context']).astype(np.float32)
      yield i, example


class KittiRaw(_RawTreeBuilder):
  """KITTI raw + TRI precomputed depth (docs/reference.md §6.1)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Point --manual_dir at the KITTI raw root (date folders, proj_depth maps from TRI) that also '
      'holds the split files named in the config (data_splits/*.txt).')
  BUILDER_CONFIGS = [
      RawTreeConfig(name='eigen_zhou_velodyne', splits={'train': 'data_splits/eigen_zhou_files.txt'},
                    depth_type='velodyne', back_context=1, forward_context=1),
      RawTreeConfig(name='eigen_test_velodyne', splits={'test': 'data_splits/eigen_test_files.txt'},
                    depth_type='velodyne'),
      RawTreeConfig(name='eigen_zhou_velodyne_192x640', splits={'train': 'data_splits/eigen_zhou_files.txt'},
                    depth_type='velodyne', back_context=1, forward_context=1, image_shape=(192, 640)),
      RawTreeConfig(name='synthetic', splits={'train': 'splits/train.txt', 'validation': 'splits/val.txt',
                                              'test': 'splits/test.txt'},
                    depth_type='velodyne', back_context=1, forward_context=1, with_pose=True),
      RawTreeConfig(name='synthetic_192x640', splits={'train': 'splits/train.txt'}, depth_type='velodyne',
                    back_context=1, forward_context=1, with_pose=True, image_shape=(192, 640)),
  ]

  def _make_reader(self, manual_dir, split):
    cfg = self.builder_config
    return kitti.KITTIReader(manual_dir, split, depth_type=cfg.depth_type, with_pose=cfg.with_pose,
                             back_context=cfg.back_context, forward_context=cfg.forward_context)


class DdadDgp(_RawTreeBuilder):
  """DDAD in DGP JSON format (front camera, lidar GT)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point --manual_dir at the folder that holds ddad.json (DDAD train/val).'
  BUILDER_CONFIGS = [
      RawTreeConfig(name='front_lidar', splits={'train': 'train', 'validation': 'val'}, depth_type='lidar',
                    back_context=1, forward_context=1, cameras=('camera_01',)),
  ]

  def _make_reader(self, manual_dir, split):
    cfg = self.builder_config
    return ddad.DDADReader(os.path.join(manual_dir, 'ddad.json'), split, cameras=cfg.cameras,
                           depth_type=cfg.depth_type, with_pose=cfg.with_pose,
                           back_context=cfg.back_context, forward_context=cfg.forward_context)


class ImageFolder(_RawTreeBuilder):
  """Folders of ordered frames (one sequence per folder), no GT."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point --manual_dir at a folder of image sequences (one per sub-folder).'
  BUILDER_CONFIGS = [RawTreeConfig(name='context_1_1', splits={'train': ''}, back_context=1, forward_context=1)]

  def _make_reader(self, manual_dir, split):
    cfg = self.builder_config
    return folder.ImageFolderReader(manual_dir, cfg.back_context, cfg.forward_context)


BUILDERS = {'KITTI': KittiRaw, 'DDAD': DdadDgp, 'DGP': DdadDgp, 'Image': ImageFolder}


def _registered_config(cls, name):
  for config in cls.BUILDER_CONFIGS:
    if config.name == name:
      return config
  raise ValueError(f'tfds_config: {cls.__name__} has no config {name!r} '
                   f'(expected one of {[c.name for c in cls.BUILDER_CONFIGS]})')


def prepare(dataset, manual_dir, data_dir, config='synthetic', **config_overrides):
  """Builds the records (what `tfds build` does); returns the builder.

  dataset: 'KITTI', 'DDAD'/'DGP', 'Image' or a builder class.
  config_overrides change fields of the named config (e.g.
  `image_shape=(192, 640)`); a changed image_shape also renames the config
  to '<name>_<H>x<W>' unless `name` is given, so full-size and
  training-resolution records never share a folder. Read such records back
  with `PreparedReader(..., config=<that name>)`.
  """
  cls = BUILDERS.get(dataset, dataset)
  if not os.path.isdir(manual_dir):
    raise ValueError(f'manual_dir: dataset root not found: {manual_dir}')
  if config_overrides:
    base = _registered_config(cls, config)
    overrides = dict(config_overrides)
    shape = tuple(overrides.get('image_shape', base.image_shape))
    if 'name' not in overrides and shape != tuple(base.image_shape):
      overrides['name'] = f'{base.name}_{shape[0]}x{shape[1]}'
    config = dataclasses.replace(base, **overrides)
  builder = cls(data_dir=data_dir, config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def _open_builder(cls, data_dir, config):
  """Builder over existing records: a registered config, else the folder's own metadata.

  config None: the one config prepared under `data_dir`, else the builder's
  default (its first config).
  """
  if config is None:
    root = os.path.join(data_dir, cls.name)
    prepared = sorted(n for n in os.listdir(root) if not n.startswith('.')) if os.path.isdir(root) else []
    config = prepared[0] if len(prepared) == 1 else None
  if config is None or any(c.name == config for c in cls.BUILDER_CONFIGS):
    return cls(data_dir=data_dir, config=config)
  folder = os.path.join(data_dir, cls.name, config)
  versions = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
  if not versions:
    raise ValueError(f'tfds_config: no records for config {config!r} under {data_dir}/{cls.name}')
  return tfds.builder_from_directory(os.path.join(folder, versions[-1]))


class PreparedReader:
  """Random-access reader over prepared records (same raw samples as the tree).

  `prepared_transform` is None for full-size records, else
  {'image_shape': (H, W), 'crop_borders': (...)} they were written at
  (build_source then checks the config against it and skips the crop).
  """

  def __init__(self, name, data_dir, split, config=None, fallback_split=None):
    cls = BUILDERS.get(name, name)
    if not os.path.isdir(data_dir):
      raise ValueError(f'tfds_data_dir: prepared data not found: {data_dir}')
    builder = _open_builder(cls, data_dir, config)
    splits = builder.info.splits
    if split not in splits and fallback_split in splits:
      split = fallback_split  # e.g. a split *file* in the config, the mode's TFDS split in the records
    if split not in splits:
      raise ValueError(f'split: the records in {data_dir} ({builder.info.full_name}) have splits '
                       f'{sorted(splits)}, got {split!r}')
    self.source = builder.as_data_source(split=split)
    self.split = split
    metadata = builder.info.metadata or {}
    shape = tuple(metadata.get('image_shape', ()) or ())
    self.prepared_transform = ({'image_shape': shape, 'crop_borders': tuple(metadata.get('crop_borders', ()))}
                               if shape else None)

  def __len__(self):
    return len(self.source)

  def load(self, idx):
    ex = self.source[idx]
    sample = {'idx': idx, 'filename': ex['filename'].decode() if isinstance(ex['filename'], bytes)
              else str(ex['filename']),
              'rgb': Image.fromarray(ex['rgb'], 'RGB'), 'intrinsics': np.asarray(ex['intrinsics'])}
    if 'rgb_context' in ex:
      sample['rgb_context'] = [Image.fromarray(im, 'RGB') for im in ex['rgb_context']]
    for key in ('depth', 'pose', 'intrinsics_full'):
      if key in ex:
        sample[key] = np.asarray(ex[key])
    if 'pose_context' in ex:
      sample['pose_context'] = list(np.asarray(ex['pose_context']))
    return sample
