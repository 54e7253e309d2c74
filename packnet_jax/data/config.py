"""Config → reader → tf.data pipeline (the public entry points).

Dataset config keys mirror the reference's `datasets.<mode>` node (a scalar
or a one-element list per key): dataset ('KITTI' | 'DDAD'/'DGP' | 'Image' |
'Video'), path, split, depth_type, input_depth_type, cameras,
back_context, forward_context, image_shape, jittering, crop_train_borders,
crop_eval_borders; plus ours: with_pose, intrinsics (Image/Video),
project_velodyne, on_error ('raise' | 'skip'), tfds_data_dir /
tfds_config (read prepared records instead of the raw tree).
"""
import logging
import os
import time

import numpy as np

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
  if not path:
    raise ValueError('path: dataset path is empty')
  if _get(cfg, 'tfds_data_dir'):
    from packnet_jax.data import tfds_builders
    return tfds_builders.PreparedReader(name, _get(cfg, 'tfds_data_dir'), split or mode,
                                        _get(cfg, 'tfds_config', 'synthetic'))
  if name == 'KITTI':
    from packnet_jax.data.kitti import KITTIReader
    return KITTIReader(path, split, depth_type=depth_type, input_depth_type=_get(cfg, 'input_depth_type') or None,
                       with_pose=with_pose, back_context=back, forward_context=forward,
                       project_velodyne=bool(_get(cfg, 'project_velodyne', False)),
                       on_error=_get(cfg, 'on_error', 'raise'))
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


def build_source(cfg, mode='train', seed=0):
  """SampleSource (reader + reference transforms) for a config."""
  reader = build_reader(cfg, mode)
  repeat = int(_get(cfg, 'repeat', 1) or 1)
  if mode == 'train' and repeat > 1:
    reader = _RepeatedReader(reader, repeat)
  if len(reader) == 0:
    raise ValueError(f'{_get(cfg, "path")}: split {_get(cfg, "split")!r} yields no samples '
                     '(missing depth files, or too few frames for the context)')
  jittering = _get(cfg, 'jittering', ())
  return SampleSource(reader, mode, image_shape=_get(cfg, 'image_shape', ()),
                      jittering=jittering if mode == 'train' else (),
                      crop_train_borders=_get(cfg, 'crop_train_borders', ()),
                      crop_eval_borders=_get(cfg, 'crop_eval_borders', ()), seed=seed)


def build_dataset(dataset_config, split='train', *, batch_size=1, num_devices=None, seed=0, shuffle=None,
                  repeat=None, start_step=0, process_index=None, process_count=None, deterministic=True):
  """tf.data.Dataset of [num_devices, batch_size, ...] batches.

  split: 'train' → infinite, shuffled (unless shuffle=False), resumable from
  `start_step`; 'validation'/'test' → one exact pass with `mask`
  (`repeat=True` cycles it). batch_size is per device.
  """
  source = build_source(dataset_config, split, seed)
  if split == 'train' and repeat is not False:
    return pipeline.make_train_dataset(
        source, per_device_batch=batch_size, num_devices=num_devices, seed=seed,
        shuffle=True if shuffle is None else shuffle, start_step=start_step, process_index=process_index,
        process_count=process_count, deterministic=deterministic)
  ds = pipeline.make_eval_dataset(source, per_device_batch=batch_size, num_devices=num_devices,
                                  process_index=process_index, process_count=process_count,
                                  deterministic=deterministic)
  return ds.repeat() if repeat else ds


class TrainIterator:
  """Numpy iterator over training batches that knows its step (for resume).

  Checkpoint `iterator.step`; `make_train_iterator(..., start_step=step)`
  continues with exactly the batches that would have followed.
  """

  def __init__(self, dataset, start_step, steps_per_epoch, num_samples):
    self._it = dataset.as_numpy_iterator()
    self.step = int(start_step)
    self.steps_per_epoch = steps_per_epoch
    self.num_samples = num_samples

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self._it)
    self.step += 1
    return batch

  @property
  def epoch(self):
    return self.step // self.steps_per_epoch


def make_train_iterator(dataset_config, *, batch_size=1, num_devices=None, seed=0, start_step=0, shuffle=True,
                        process_index=None, process_count=None, deterministic=True, source=None):
  """Resumable training iterator of numpy [D, B, ...] batches.

  `source`: the split's SampleSource if the caller has built it already (it scans the split).
  """
  process_index, process_count = pipeline._default_process(process_index, process_count)
  num_devices = pipeline._default_devices(num_devices)
  source = source if source is not None else build_source(dataset_config, 'train', seed)
  ds = pipeline.make_train_dataset(source, per_device_batch=batch_size, num_devices=num_devices, seed=seed,
                                   shuffle=shuffle, start_step=start_step, process_index=process_index,
                                   process_count=process_count, deterministic=deterministic)
  steps = pipeline.train_steps_per_epoch(len(source), batch_size, num_devices, process_count)
  return TrainIterator(ds, start_step, steps, len(source))


def make_eval_iterator(dataset_config, split='validation', *, batch_size=1, num_devices=None,
                       process_index=None, process_count=None):
  """One exact pass of numpy batches with a boolean `mask` [D, B]."""
  return build_dataset(dataset_config, split, batch_size=batch_size, num_devices=num_devices,
                       process_index=process_index, process_count=process_count).as_numpy_iterator()


def benchmark_pipeline(dataset_config, *, batch_size=4, num_devices=1, num_batches=20, warmup=2,
                       deterministic=False):
  """Measures training-pipeline throughput; returns {'images_per_s', ...}.

  Counts target images per second (each sample also decodes its contexts).
  """
  it = make_train_iterator(dataset_config, batch_size=batch_size, num_devices=num_devices,
                           process_index=0, process_count=1, deterministic=deterministic)
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  elapsed = time.perf_counter() - start
  images = num_batches * batch_size * num_devices
  result = {'images_per_s': images / elapsed, 'seconds': elapsed, 'images': images,
            'cpu_count': os.cpu_count()}
  logging.info('data pipeline: %.1f images/s', result['images_per_s'])
  return result
