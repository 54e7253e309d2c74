"""`forward`: eval-mode forward of each network, optionally timed in turns with the reference's."""
import time

import jax
import numpy as np
from absl import flags

from bench import networks, records, timing, torch_side
from packnet_jax import cli


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('network', 'all', f'"all" or comma-separated of {",".join(networks.NETWORKS)}',
                      flag_values=fv)
  flags.DEFINE_string('shape', '192,640', 'H,W network input, multiples of 32', flag_values=fv)
  flags.DEFINE_integer('batch', 1, 'batch size', lower_bound=1, flag_values=fv)
  cli.define_dtype(fv)
  torch_side.define_flags(fv)
  timing.define_flags(fv)
  fv(argv)
  return fv


def bench_forward(name, shape, batch, dtype, iters, warmup, torch_source=None):
  """Forward record of `name`; with `torch_source`, also the reference's record, timed in turns."""
  module, kind = networks.build_network(name, dtype)
  inputs = networks.network_inputs(kind, batch, shape)
  variables = networks.random_variables(module, *inputs)

  def forward(variables, *inputs):
    return module.apply(variables, *inputs, train=False)
  start = time.perf_counter()
  compiled = jax.jit(forward).lower(variables, *inputs).compile()
  compile_s = time.perf_counter() - start
  fns = [lambda: jax.block_until_ready(compiled(variables, *inputs))]
  if torch_source is not None:
    fns.append(torch_forward_fn(name, shape, batch, torch_source))
  times = timing.library_times(fns, iters, warmup)
  params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables.get('params', {})))
  record = {'benchmark': 'forward', 'network': name, 'shape': list(shape), 'batch': batch, 'dtype': dtype,
            'compile_s': compile_s, 'peak_memory_bytes': records.peak_memory_bytes(),
            'compiled_memory_bytes': records.compiled_memory(compiled).get('compiled_memory_bytes'),
            'num_params': params, **records.latency_stats(times[0], batch)}
  if torch_source is None:
    return [record]
  import torch  # pylint: disable=import-outside-toplevel
  reference = {'benchmark': 'forward_torch', 'network': name, 'shape': list(shape), 'batch': batch,
               'torch': torch.__version__, 'threads': torch.get_num_threads(),
               **records.latency_stats(times[1], batch)}
  record['jax_over_torch_time'] = reference['jax_over_torch_time'] = record['median_s'] / reference['median_s']
  return [record, reference]


def torch_forward_fn(name, shape, batch, torch_source):
  """A no-arg function running the reference network's eval forward (no_grad) on random NCHW inputs."""
  torch, torch_reference = torch_side.import_torch(torch_source)
  _, cls, version = networks.NETWORKS[name]
  net = torch_reference.build_network(cls, version, nb_ref_imgs=networks.NUM_CONTEXT).eval()
  h, w = shape
  rgb = torch.rand(batch, 3, h, w)
  contexts = [torch.rand(batch, 3, h, w) for _ in range(networks.NUM_CONTEXT)]
  args = (rgb, contexts) if cls.startswith('Pose') else (rgb,)

  def run():
    with torch.no_grad():
      net(*args)
  return run


def run(fv):
  """Every requested network's records, each printed as it is measured."""
  names = networks.network_names(fv.network)
  shape = cli.parse_image_shape(fv.shape, '--shape')
  out = []
  for name in names:
    for record in bench_forward(name, shape, fv.batch, fv.dtype, fv.iters, fv.warmup, torch_side.source(fv)):
      out.append(records.emit(record))
  return out
