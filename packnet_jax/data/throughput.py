"""Training-pipeline throughput in samples per second and per CPU core.

`benchmark_pipeline(dataset_config)` runs the real training iterator (the
same reader, transforms, jitter parameter draws and tf.data graph as
training; the jitter itself runs in the train step, on the device) and
reports:

  samples_per_s        wall-clock rate of this process;
  samples_per_cpu_s    samples per CPU-second the process consumed (all its
                       threads: Python, PIL, tf.data). This is the per-core
                       figure: it does not depend on how busy the machine is,
                       so `needed cores = samples/s wanted / samples_per_cpu_s`;
  samples_per_s_per_core  wall rate divided by the cores the process may use
                       (`os.sched_getaffinity`), meaningful when pinned with
                       `taskset -c 0` on an otherwise idle machine.

A sample is one target frame with its contexts (each frame is decoded once).
`threads=1` pins the loading to one tf.data thread (the default here, so the
figures are per core); `threads=None` uses tf.data's default parallelism.
"""
import gc
import logging
import os
import time

from packnet_jax.data import config as config_lib


def benchmark_pipeline(dataset_config, *, batch_size=4, num_devices=1, num_batches=20, warmup=2,
                       deterministic=False, threads=1, seed=0):
  """Measures training-pipeline throughput (see module docstring).

  Args:
    dataset_config: a train split config (raw tree, or `tfds_data_dir` for
      prepared records).
    batch_size, num_devices: batch shape [num_devices, batch_size].
    num_batches: timed batches, after `warmup` untimed ones.
    threads: tf.data threads (None = tf.data's default parallelism).

  Returns:
    dict of the figures above plus 'images_per_s' / 'images' (= samples_per_s
    / samples: target images), 'seconds', 'cpu_seconds', 'samples',
    'threads', 'cores', 'num_samples' (the split's size).
  """
  source = config_lib.build_source(dataset_config, 'train', seed)
  it = config_lib.make_train_iterator(dataset_config, batch_size=batch_size, num_devices=num_devices, seed=seed,
                                      process_index=0, process_count=1, deterministic=deterministic,
                                      source=source, threads=threads)
  for _ in range(warmup):
    next(it)
  cpu0, wall0 = time.process_time(), time.perf_counter()
  for _ in range(num_batches):
    next(it)
  wall = time.perf_counter() - wall0
  cpu = time.process_time() - cpu0
  del it  # Stop tf.data's threads before returning.
  gc.collect()
  samples = num_batches * batch_size * num_devices
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  result = {'samples_per_s': samples / wall, 'samples_per_cpu_s': samples / cpu,
            'samples_per_s_per_core': samples / wall / cores,
            'images_per_s': samples / wall, 'images': samples,
            'seconds': wall, 'cpu_seconds': cpu, 'samples': samples, 'threads': threads, 'cores': cores,
            'num_samples': len(source)}
  logging.info('data pipeline: %.1f samples/s, %.1f samples per CPU-second', result['samples_per_s'],
               result['samples_per_cpu_s'])
  return result
