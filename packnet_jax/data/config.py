"""Config → reader → tf.data pipeline (the public entry points).

Dataset config keys mirror the reference's `datasets.<mode>` node: dataset ('KITTI' | 'DDAD'/'DGP' | 'Image' |
'Video'), path, split, depth_type, input_depth_type, cameras,
back_context, forward_context, image_shape, jittering, crop_train_borders,
crop_eval_borders, repeat (the per-dataset ones take a scalar or a list, one value
per dataset; see `dataset_list`); plus ours (declared in configs/default.py):
shuffle (train order; default True), with_pose, intrinsics (Image/Video;
() = the documented default), project_velodyne, on_error ('raise' |
'skip'), tfds_data_dir / tfds_config (read prepared records instead of
the raw tree; tfds_config '' = the builder's default config).
"""
from packnet_jax.data import concat
from packnet_jax.data import dataset_list
from packnet_jax.data import pipeline
from packnet_jax.data.source import SampleSource


def _get(cfg, key, default=None):
  try:
    value = cfg[key] if key in cfg else default
  except TypeError:
    value = getattr(cfg, key, default)
  # The reference stores per-dataset values in lists of length 1.
  if isinstance(value, (list, tuple)) and len(value) == 1 and key in (
      'dataset', 'path', 'split', 'depth_type', 'input_depth_type', 'cameras', 'repeat'):
    value = value[0]
  return value


def build_reader(cfg, mode='train'):
  """Reader for one dataset config (see module docstring)."""
  name = _get(cfg, 'dataset', 'KITTI')
  path = _get(cfg, 'path')
  split = _get(cfg, 'split', '')
  back = int(_get(cfg, 'back_context', 0) or 0)
  forward = int(_get(cfg, 'forward_context', 0) or 0)
  depth_type = _get(cfg, 'depth_type', '') or None
  with_pose = bool(_get(cfg, 'with_pose', False))
  on_error = _get(cfg, 'on_error', 'raise') or 'raise'
  if on_error not in ('raise', 'skip'):
    raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
  if _get(cfg, 'tfds_data_dir'):
    from packnet_jax.data import tfds_builders
    # '' = the builder's default config; the TFDS split is `split` if the
    # records have one of that name, else the mode ('train', 'validation', ...).
    return tfds_builders.PreparedReader(name, _get(cfg, 'tfds_data_dir'), split or mode,
                                        _get(cfg, 'tfds_config') or None, fallback_split=mode)
  if not path:
    raise ValueError('path: dataset path is empty')
  if name == 'KITTI':
    from packnet_jax.data.kitti import KITTIReader
    return KITTIReader(path, split, depth_type=depth_type, input_depth_type=_get(cfg, 'input_depth_type') or None,
                       with_pose=with_pose, back_context=back, forward_context=forward,
                       project_velodyne=bool(_get(cfg, 'project_velodyne', False)),
                       on_error=on_error)
  if name in ('DDAD', 'DGP'):
    from packnet_jax.data.ddad import DDADReader
    cameras = _get(cfg, 'cameras') or ['camera_01']
    cameras = [cameras] if isinstance(cameras, str) else list(cameras)
    return DDADReader(path, split or 'train', cameras=cameras, depth_type=depth_type, with_pose=with_pose,
                      back_context=back, forward_context=forward)
  if name in ('Image', 'Video'):
    from packnet_jax.data import folder
    cls = folder.ImageFolderReader if name == 'Image' else folder.VideoReader
    if depth_type:
      raise ValueError(f'depth_type: dataset {name} has no ground-truth depth, got {depth_type!r}')
    return cls(path, back, forward, intrinsics=_get(cfg, 'intrinsics'))
  raise ValueError(f"dataset: expected 'KITTI', 'DDAD', 'Image' or 'Video', got {name!r}")


class _RepeatedReader:
  """The reference's `repeat`: the same samples listed n times per epoch."""

  def __init__(self, reader, times):
    self.reader, self.times = reader, times

  def __len__(self):
    return len(self.reader) * self.times

  def load(self, idx):
    sample = self.reader.load(idx % len(self.reader))
    sample['idx'] = idx
    return sample


def _prepared_crop(reader, cfg, mode):
  """crop_train_borders left to apply at read time (records may be cropped and resized already)."""
  crop = tuple(_get(cfg, 'crop_train_borders', ()) or ())
  prepared = getattr(reader, 'prepared_transform', None)
  if not prepared:
    return crop
  where = f'tfds_data_dir {_get(cfg, "tfds_data_dir")}'
  if mode != 'train':
    raise ValueError(f'{where}: records prepared at training resolution hold train samples only '
                     f'(evaluate from the raw tree or full-size records), got split {mode!r}')
  shape = tuple(_get(cfg, 'image_shape', ()) or ())
  if shape != prepared['image_shape']:
    raise ValueError(f'image_shape: the records in {where} were prepared at {prepared["image_shape"]}, '
                     f'got {shape}')
  if crop != prepared['crop_borders']:
    raise ValueError(f'crop_train_borders: the records in {where} were cropped with '
                     f'{prepared["crop_borders"]}, got {crop}')
  return ()  # Already cropped; resizing again to the same shape is the identity.


def _single_source(cfg, mode, seed, index_offset=0):
  """SampleSource of one dataset (a config whose list keys hold one value each)."""
  reader = build_reader(cfg, mode)
  crop_train_borders = _prepared_crop(reader, cfg, mode)
  repeat = int(_get(cfg, 'repeat', 1) or 1)
  if mode == 'train' and repeat > 1:
    reader = _RepeatedReader(reader, repeat)
  if len(reader) == 0:
    raise ValueError(f'{_get(cfg, "path")}: split {_get(cfg, "split")!r} yields no samples '
                     '(missing depth files, or too few frames for the context)')
  jittering = _get(cfg, 'jittering', ())
  return SampleSource(reader, mode, image_shape=_get(cfg, 'image_shape', ()),
                      jittering=jittering if mode == 'train' else (),
                      crop_train_borders=crop_train_borders,
                      crop_eval_borders=_get(cfg, 'crop_eval_borders', ()), seed=seed,
                      index_offset=index_offset)


def build_source(cfg, mode='train', seed=0):
  """SampleSource (reader + reference transforms) for a config.

  Several datasets (list keys, see `dataset_list`) are concatenated, each repeated
  `repeat[i]` times: the reference's ConcatDataset, so one shuffled order mixes them.
  """
  configs = dataset_list.expand(cfg, f'datasets.{mode}')
  if len(configs) == 1:
    return _single_source(configs[0], mode, seed)
  sources, offset = [], 0
  for one in configs:
    sources.append(_single_source(one, mode, seed, index_offset=offset))
    offset += len(sources[-1])
  names = [f'dataset {i} ({dataset_list.prefix(one)})' for i, one in enumerate(configs)]
  return concat.ConcatSource(sources, names, f'datasets.{mode}')


def _shuffle(cfg, shuffle):
  """An explicit `shuffle` argument wins; else the config's `shuffle` (default True)."""
  if shuffle is not None:
    return bool(shuffle)
  value = _get(cfg, 'shuffle', True)
  return True if value is None else bool(value)


def build_dataset(dataset_config, split='train', *, batch_size=1, num_devices=None, seed=0, shuffle=None,
                  repeat=None, start_step=0, process_index=None, process_count=None, deterministic=True):
  """tf.data.Dataset of [num_devices, batch_size, ...] batches.

  split: 'train' → infinite, shuffled unless `shuffle` (argument, else the
  config key) is False, resumable from `start_step`; 'validation'/'test' →
  one exact pass with `mask` (`repeat=True` cycles it). batch_size is per
  device.
  """
  source = build_source(dataset_config, split, seed)
  if split == 'train' and repeat is not False:
    return pipeline.make_train_dataset(
        source, per_device_batch=batch_size, num_devices=num_devices, seed=seed,
        shuffle=_shuffle(dataset_config, shuffle), start_step=start_step, process_index=process_index,
        process_count=process_count, deterministic=deterministic)
  ds = pipeline.make_eval_dataset(source, per_device_batch=batch_size, num_devices=num_devices,
                                  process_index=process_index, process_count=process_count,
                                  deterministic=deterministic)
  return ds.repeat() if repeat else ds


class TrainIterator:
  """Numpy iterator over training batches.

  Resuming is the caller's job: `make_train_iterator(..., start_step=step)`
  continues with exactly the batches that would have followed step `step`.
  """

  def __init__(self, dataset, steps_per_epoch, num_samples):
    self._it = dataset.as_numpy_iterator()
    self.steps_per_epoch = steps_per_epoch
    self.num_samples = num_samples

  def __iter__(self):
    return self

  def __next__(self):
    return next(self._it)


def make_train_iterator(dataset_config, *, batch_size=1, num_devices=None, seed=0, start_step=0, shuffle=None,
                        process_index=None, process_count=None, deterministic=True, source=None, threads=None):
  """Resumable training iterator of numpy [D, B, ...] batches.

  Args:
    dataset_config: the train split's config (see module docstring).
    shuffle: None → the config's `shuffle` key (default True).
    source: the split's SampleSource if the caller has built it already
      (`build_source(dataset_config, 'train', seed)`; building scans the
      split from disk, so build it once and pass it here).
    threads: None → tf.data's default parallelism; an int pins loading to that many
      threads.

  Returns:
    TrainIterator with `steps_per_epoch` and `num_samples`.
  """
  process_index, process_count = pipeline._default_process(process_index, process_count)
  num_devices = pipeline._default_devices(num_devices)
  if source is None:
    source = build_source(dataset_config, 'train', seed)
  ds = pipeline.make_train_dataset(source, per_device_batch=batch_size, num_devices=num_devices, seed=seed,
                                   shuffle=_shuffle(dataset_config, shuffle), start_step=start_step,
                                   process_index=process_index, process_count=process_count,
                                   deterministic=deterministic, threads=threads)
  steps = pipeline.train_steps_per_epoch(len(source), batch_size, num_devices, process_count)
  return TrainIterator(ds, steps, len(source))


def make_eval_iterator(dataset_config, split='validation', *, batch_size=1, num_devices=None,
                       process_index=None, process_count=None):
  """One exact pass of numpy batches with a boolean `mask` [D, B]."""
  return build_dataset(dataset_config, split, batch_size=batch_size, num_devices=num_devices,
                       process_index=process_index, process_count=process_count).as_numpy_iterator()
