"""`scaling`: weak scaling of a pmapped forward, per-device batch fixed, over 1..N local devices."""
import time

import jax
import jax.numpy as jnp
from absl import flags

from bench import networks, records, timing
from packnet_jax import cli


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_enum('network', 'DepthResNet18', list(networks.NETWORKS), 'network', flag_values=fv)
  flags.DEFINE_string('shape', '192,640', 'H,W network input, multiples of 32', flag_values=fv)
  flags.DEFINE_integer('batch', 1, 'batch per device', lower_bound=1, flag_values=fv)
  cli.define_dtype(fv)
  timing.define_flags(fv)
  fv(argv)
  return fv


def device_counts(available):
  """1, 2, 4, ... up to `available`, and `available` itself."""
  counts = [n for n in (1, 2, 4, 8, 16, 32) if n <= available]
  return counts if available in counts else counts + [available]


def run(fv):
  """One record per device count; efficiency is frames/s relative to N × the one-device rate."""
  shape = cli.parse_image_shape(fv.shape, '--shape')
  module, kind = networks.build_network(fv.network, fv.dtype)
  devices = jax.local_devices()
  inputs = networks.network_inputs(kind, fv.batch, shape)
  variables = networks.random_variables(module, *inputs)
  out, base = [], None
  for n in device_counts(len(devices)):
    fn = jax.pmap(lambda v, *x: module.apply(v, *x, train=False), devices=devices[:n])
    stacked = jax.tree_util.tree_map(lambda x, n=n: jnp.broadcast_to(x, (n,) + x.shape), (variables,) + inputs)
    start = time.perf_counter()
    jax.block_until_ready(fn(*stacked))
    compile_s = time.perf_counter() - start
    (times,) = timing.interleaved_times([lambda: jax.block_until_ready(fn(*stacked))], fv.iters, fv.warmup)
    stats = records.latency_stats(times, n * fv.batch)
    base = base or stats['frames_per_s']
    out.append(records.emit({'benchmark': 'scaling', 'network': fv.network, 'shape': list(shape),
                             'batch_per_device': fv.batch, 'devices': n, 'dtype': fv.dtype,
                             'first_call_s': compile_s, 'efficiency': stats['frames_per_s'] / (n * base),
                             **stats}))
  return out
