"""`data`: host input-pipeline samples/s per CPU core, and the device cost of the colour jitter it leaves
to the train step."""
import contextlib
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
from absl import flags

from bench import records
from packnet_jax import cli

SYNTHETIC_KITTI = pathlib.Path(__file__).resolve().parents[1] / 'make_synthetic_kitti.py'


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('path', None, 'KITTI raw root (default: a synthetic scene in a temp dir)', flag_values=fv)
  flags.DEFINE_string('split', 'splits/train.txt', 'split file under --path', flag_values=fv)
  flags.DEFINE_string('shape', '96,320', 'H,W training resolution, multiples of 32', flag_values=fv)
  flags.DEFINE_string('source_shape', None, 'H,W of the synthetic frames (default: --shape); e.g. 375,1242 '
                      'to resize like KITTI', flag_values=fv)
  flags.DEFINE_bool('records', False, 'read records prepared at --shape (in the temp dir) instead of PNGs',
                    flag_values=fv)
  flags.DEFINE_string('depth_type', '', "depth loaded with each sample ('' = none, e.g. velodyne)",
                      flag_values=fv)
  flags.DEFINE_list('jittering', ['0.2', '0.2', '0.2', '0.05'], "colour jitter values ('' = off)",
                    flag_values=fv)
  flags.DEFINE_integer('device_iters', 10, "timed calls of the train step's colour jitter on one batch "
                       '(0 = skip)', lower_bound=0, flag_values=fv)
  flags.DEFINE_integer('batch', 4, 'batch size', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('batches', 10, 'timed batches', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('frames', 24, 'synthetic scene length', lower_bound=3, flag_values=fv)
  flags.DEFINE_integer('warmup', 2, 'untimed batches first', lower_bound=0, flag_values=fv)
  fv(argv)
  return fv


def _jittering(values):
  try:
    return tuple(float(v) for v in values if v.strip())
  except ValueError:
    raise ValueError(f'--jittering: expected four numbers such as 0.2,0.2,0.2,0.05, got {",".join(values)!r}') \
        from None


def run(fv):
  """The pipeline's record, printed."""
  from packnet_jax.data import benchmark_pipeline  # pylint: disable=import-outside-toplevel
  shape = cli.parse_image_shape(fv.shape, '--shape')
  source_shape = cli.parse_hw(fv.source_shape, '--source_shape') or shape
  jittering = _jittering(fv.jittering)
  if fv.path and not os.path.isdir(fv.path):
    raise ValueError(f'--path: dataset root not found: {fv.path}')
  with tempfile.TemporaryDirectory() as tmp:
    path, split = fv.path, fv.split
    if not path:
      # Written by another process, like a user's dataset on disk: a scene generated in this process
      # measured the pipeline at about half its rate (allocator state).
      path, split = os.path.join(tmp, 'kitti'), 'splits/train.txt'
      subprocess.run([sys.executable, str(SYNTHETIC_KITTI), '--output', path, '--frames', str(fv.frames),
                      '--height', str(source_shape[0]), '--width', str(source_shape[1])],
                     stdout=sys.stderr, check=True)
    config = {'dataset': 'KITTI', 'path': path, 'split': split, 'back_context': 1, 'forward_context': 1,
              'depth_type': fv.depth_type, 'image_shape': shape, 'jittering': jittering}
    if fv.records:  # records at training resolution: crop + resize done once, when written
      from packnet_jax.data import tfds_builders  # pylint: disable=import-outside-toplevel
      with contextlib.redirect_stdout(sys.stderr):
        builder = tfds_builders.prepare('KITTI', path, os.path.join(tmp, 'tfds'), config='synthetic',
                                        splits={'train': split}, depth_type=fv.depth_type,
                                        with_pose=False, image_shape=shape, name=f'bench_{shape[0]}x{shape[1]}')
      config.update(tfds_data_dir=os.path.join(tmp, 'tfds'), tfds_config=builder.builder_config.name)
    result = benchmark_pipeline(config, batch_size=fv.batch, num_devices=1, num_batches=fv.batches,
                                warmup=fv.warmup)
    if jittering and fv.device_iters:
      result.update(device_jitter_cost(config, fv.batch, fv.device_iters))
  return [records.emit({'benchmark': 'data', 'dataset': 'KITTI' if fv.path else 'synthetic KITTI',
                        'records': fv.records, 'source_shape': list(source_shape), 'shape': list(shape),
                        'jittering': list(jittering), 'batch': fv.batch, **result})]


def device_jitter_cost(config, batch, iters):
  """Median time of the train step's colour jitter (jitted) on one pipeline batch, first device."""
  from packnet_jax.data import config as data_config  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import train_step  # pylint: disable=import-outside-toplevel
  it = data_config.make_train_iterator(config, batch_size=batch, num_devices=1, process_index=0, process_count=1)
  inputs = {k: jnp.asarray(v[0]) for k, v in train_step.model_inputs(next(it)).items()}
  del it
  jitter = jax.jit(train_step.apply_colour_jitter)
  start = time.perf_counter()
  jax.block_until_ready(jitter(inputs))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(jitter(inputs))
    times.append(time.perf_counter() - start)
  return {'device_jitter_ms': 1e3 * statistics.median(times), 'device_jitter_first_call_s': compile_s,
          'device_jitter_iters': iters, 'device_jitter_frames': batch * (1 + inputs['rgb_context_original'].shape[1])}
