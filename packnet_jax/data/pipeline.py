"""tf.data input pipelines: sharded, seeded, resumable, pmap-shaped batches.

Batches are dicts of numpy arrays shaped [num_devices, per_device_batch, ...].

Training (`make_train_dataset` / `make_train_iterator`): every epoch e the
*global* sample order is `default_rng([seed, e]).permutation(N)` (identity
without shuffle); process p of P takes `order[p::P]` truncated to
`steps_per_epoch · D · B` samples, so hosts are disjoint, get the same number
of steps, and the tail that does not fill a global batch is dropped. The
stream is a pure function of (seed, step), hence `start_step` resumes
exactly: it restarts at epoch `start_step // steps_per_epoch` and skips the
remaining batches' indices without loading them.

Evaluation (`make_eval_dataset`): one exact pass; process p takes samples
`p::P`, padded (with copies of a real sample) to the same number of batches
on every host; the boolean `mask` key is False for padding, so nothing is
dropped or counted twice. GT depth may differ in size between samples
(KITTI drives), so eval batches are zero-padded to the largest map in the
batch and `depth_hw` [.., 2] gives each map's true (H, W).

Loading runs Python (PIL decode, LANCZOS, the jitter parameter draws)
inside `tf.numpy_function` on tf.data's default parallelism (one call per
core, at most 16); PIL releases the GIL for decoding/resizing, so threads
scale. The colour jitter itself
runs in the train step (`packnet_jax.data.jitter`): train batches carry the
originals and the per-sample jitter parameters (int32 / float32 arrays).
Images leave Python as uint8 and become float32 (x/255, the same numbers as ToTensor) after batching, which
moves 4x fewer bytes through tf.data. Building a pipeline also makes
Pillow and glibc keep freed buffers for reuse (`allocators`): the same
values, about half the CPU time per sample. `deterministic=False` lets tf.data
emit elements out of order (faster; each element's content stays seeded).
"""
import math

import numpy as np

from packnet_jax.data import allocators
from packnet_jax.data._tf import tf
from packnet_jax.data.transforms import IMAGE_KEYS

AUTOTUNE = tf.data.AUTOTUNE


def _default_process(process_index, process_count):
  if process_index is None or process_count is None:
    import jax
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index: expected in [0, {process_count}), got {process_index}')
  return int(process_index), int(process_count)


def _default_devices(num_devices):
  if num_devices is None:
    import jax
    num_devices = jax.local_device_count()
  return int(num_devices)


def _signature(source, probe_index=0):
  """Output keys/dtypes/shapes, from one probed sample (images as uint8)."""
  sample = source(probe_index, 0, uint8_images=True)
  spec = {}
  for key, value in sample.items():
    if isinstance(value, str):
      spec[key] = (tf.string, ())
    else:
      value = np.asarray(value)
      spec[key] = (tf.as_dtype(value.dtype), value.shape)
  return spec


def _map_loader(ds, source, spec, deterministic, extra=None, threads=None):
  """(index, epoch[, mask]) → sample dict via tf.numpy_function."""
  keys = sorted(spec)

  def load(index, epoch):
    sample = source(index, epoch, uint8_images=True)
    return [np.asarray(sample[k].encode()) if spec[k][0] == tf.string
            else np.asarray(sample[k], dtype=spec[k][0].as_numpy_dtype) for k in keys]

  def tf_load(index, epoch, *rest):
    values = tf.numpy_function(load, [index, epoch], [spec[k][0] for k in keys], stateful=False)
    out = {}
    for k, v in zip(keys, values):
      shape = spec[k][1]
      if extra == 'eval' and k in ('depth', 'input_depth'):
        v.set_shape([None, None, shape[-1]])
        out[k + '_hw'] = tf.shape(v)[:2]
      else:
        v.set_shape(shape)
      out[k] = v
    if rest:
      out['mask'] = rest[0]
    return out

  return ds.map(tf_load, num_parallel_calls=threads or AUTOTUNE, deterministic=deterministic)


def _to_devices(batch, num_devices, per_device_batch):
  """[D·B, ...] → [D, B, ...]; uint8 images → float32 x/255 (ToTensor's numbers)."""
  def reshape(x):
    return tf.reshape(x, tf.concat([[num_devices, per_device_batch], tf.shape(x)[1:]], 0))

  def finish(key, x):
    if key in IMAGE_KEYS and x.dtype == tf.uint8:
      # A true float32 division, correctly rounded like numpy's (not x·(1/255)).
      x = tf.cast(x, tf.float32) / tf.constant(255.0, tf.float32)
    return reshape(x)
  return {k: finish(k, v) for k, v in batch.items()}


def _options(deterministic, threads=None):
  options = tf.data.Options()
  options.deterministic = deterministic
  options.experimental_optimization.map_parallelization = True
  # No autotuning: AUTOTUNE parallelism stays at tf.data's default (the cores, at most 16), as fast for
  # these loaders, and without the autotune thread that holds up every iterator's deletion for up to
  # its optimisation period (seconds; docs/performance.md, "Data pipeline").
  options.autotune.enabled = False
  if threads:  # Pin the pipeline to `threads` threads (benchmarks per core).
    options.threading.private_threadpool_size = int(threads)
    options.threading.max_intra_op_parallelism = 1
  return options


def train_steps_per_epoch(num_samples, per_device_batch, num_devices, process_count):
  """Steps per epoch (same on every host)."""
  return (num_samples // process_count) // (per_device_batch * num_devices)


def train_index_stream(num_samples, *, per_device_batch, num_devices, seed, shuffle, process_index,
                       process_count, start_step=0):
  """Infinite generator of (index, epoch) for one host, starting at `start_step`."""
  steps = train_steps_per_epoch(num_samples, per_device_batch, num_devices, process_count)
  if steps == 0:
    raise ValueError(f'batch: {num_samples} samples cannot fill one global batch of '
                     f'{process_count}x{num_devices}x{per_device_batch}')
  per_epoch = steps * per_device_batch * num_devices
  epoch, skip = divmod(int(start_step), steps)
  skip *= per_device_batch * num_devices
  while True:
    order = (np.random.default_rng([seed, epoch]).permutation(num_samples) if shuffle
             else np.arange(num_samples))
    for index in order[process_index::process_count][skip:per_epoch]:
      yield int(index), epoch
    skip = 0
    epoch += 1


def make_train_dataset(source, *, per_device_batch, num_devices=None, seed=0, shuffle=True, start_step=0,
                       process_index=None, process_count=None, deterministic=True, prefetch=2, threads=None):
  """Infinite training tf.data.Dataset of [D, B, ...] batches (see module doc).

  threads: None lets tf.data size its thread pool; an int pins
  the loading to that many threads (used to measure samples/s per core).
  """
  process_index, process_count = _default_process(process_index, process_count)
  num_devices = _default_devices(num_devices)
  allocators.tune()  # Reuse image buffers instead of page-faulting them in per sample.
  spec = _signature(source)
  n = len(source)
  kwargs = dict(per_device_batch=per_device_batch, num_devices=num_devices, seed=seed, shuffle=shuffle,
                process_index=process_index, process_count=process_count, start_step=start_step)
  next(train_index_stream(n, **kwargs))  # Validates now (generator bodies run lazily).
  ds = tf.data.Dataset.from_generator(
      lambda: train_index_stream(n, **kwargs),
      output_signature=(tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64)))
  ds = _map_loader(ds, source, spec, deterministic, threads=threads)
  ds = ds.batch(per_device_batch * num_devices, drop_remainder=True)
  ds = ds.map(lambda b: _to_devices(b, num_devices, per_device_batch))
  return ds.prefetch(prefetch).with_options(_options(deterministic, threads))


def eval_indices(num_samples, *, per_device_batch, num_devices, process_index, process_count):
  """(indices, mask) of one host's exact eval pass, padded to whole batches."""
  per_host = math.ceil(num_samples / process_count)
  global_batch = per_device_batch * num_devices
  padded = max(1, math.ceil(per_host / global_batch)) * global_batch
  mine = np.arange(process_index, num_samples, process_count)
  fill = mine[:1] if len(mine) else np.zeros(1, np.int64)
  indices = np.concatenate([mine, np.repeat(fill, padded - len(mine))]).astype(np.int64)
  mask = np.arange(padded) < len(mine)
  return indices, mask


def make_eval_dataset(source, *, per_device_batch=1, num_devices=None, process_index=None, process_count=None,
                      deterministic=True, prefetch=2):
  """Single exact pass with `mask` (see module doc)."""
  process_index, process_count = _default_process(process_index, process_count)
  num_devices = _default_devices(num_devices)
  allocators.tune()  # Reuse image buffers instead of page-faulting them in per sample.
  spec = _signature(source)
  indices, mask = eval_indices(len(source), per_device_batch=per_device_batch, num_devices=num_devices,
                               process_index=process_index, process_count=process_count)
  ds = tf.data.Dataset.from_tensor_slices((indices, np.zeros_like(indices), mask))
  ds = _map_loader(ds, source, spec, deterministic, extra='eval')
  ds = ds.padded_batch(per_device_batch * num_devices, drop_remainder=True)
  ds = ds.map(lambda b: _to_devices(b, num_devices, per_device_batch))
  return ds.prefetch(prefetch).with_options(_options(deterministic))
