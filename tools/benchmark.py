"""Benchmarks: network forward, train step, data pipeline, multi-device scaling.

  python tools/benchmark.py forward --network all --shape 192,640 [--batch 1 --dtype float32 --iters 5]
  python tools/benchmark.py forward --network PackNet01 --torch_reference /path/to/packnet-sfm
  python tools/benchmark.py train_step --config configs/kitti.py --shape 192,640 --batch 1
  python tools/benchmark.py data [--path KITTI_ROOT --split splits/train.txt] --shape 96,320
  python tools/benchmark.py scaling --network DepthResNet18 --shape 192,640 --batch 1

Every measurement prints one JSON line with the device kind and library
versions. Compilation and warm-up iterations are excluded from the timings
(compile time is reported separately); every timed call is followed by
`block_until_ready`. Weights are random (timing does not depend on them) and
are made without running the initialiser.
"""
import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# name → (registry kind, class name, version); the reference's table (docs/reference.md §10) order.
NETWORKS = {
    'PackNet01': ('depth', 'PackNet01', '1A'),
    'PackNetSlim01': ('depth', 'PackNetSlim01', '1A'),
    'DepthResNet18': ('depth', 'DepthResNet', '18'),
    'DepthResNet50': ('depth', 'DepthResNet', '50'),
    'PoseNet': ('pose', 'PoseNet', None),
    'PoseResNet18': ('pose', 'PoseResNet', '18'),
}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
NUM_CONTEXT = 2


def environment():
  """Device kind and versions, attached to every record."""
  import flax  # pylint: disable=import-outside-toplevel
  device = jax.devices()[0]
  return {'platform': device.platform, 'device_kind': device.device_kind,
          'num_devices': jax.device_count(), 'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else None,
          'flax': flax.__version__, 'numpy': np.__version__, 'python': platform.python_version()}


def emit(record, out=None):
  """Prints one JSON line (and returns the record)."""
  record = dict(record, **environment())
  print(json.dumps(record, sort_keys=True), file=out or sys.stdout, flush=True)
  return record


def parse_shape(text):
  try:
    h, w = (int(v) for v in text.split(','))
  except ValueError:
    raise SystemExit(f'--shape: expected "H,W", got {text!r}') from None
  return h, w


def random_variables(module, *args, seed=0, **kwargs):
  """Variables with the shapes `module.init` would give, filled with scaled noise (no compile).

  Norm scales/variances are 1, shifts/means/biases 0, kernels N(0, 1/fan_in).
  """
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args, **kwargs)
  rng = np.random.RandomState(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if 'var' in name or 'scale' in name:
      return jnp.ones(s.shape, s.dtype)
    if 'mean' in name or 'bias' in name:
      return jnp.zeros(s.shape, s.dtype)
    fan_in = max(1, int(np.prod(s.shape[:-1])))
    return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(fan_in), s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def build_network(name, dtype=jnp.float32):
  """(module, example inputs (batch 1 placeholder shapes resolved later), kind)."""
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  if name not in NETWORKS:
    raise SystemExit(f'--network: expected "all" or one of {sorted(NETWORKS)}, got {name!r}')
  kind, cls, version = NETWORKS[name]
  if kind == 'depth':
    return registry.build_depth_net(cls, version, dtype=dtype), kind
  return registry.build_pose_net(cls, version, nb_ref_imgs=NUM_CONTEXT, dtype=dtype), kind


def network_inputs(kind, batch, shape, seed=0):
  h, w = shape
  rng = np.random.RandomState(seed)
  rgb = jnp.asarray(rng.uniform(size=(batch, h, w, 3)).astype(np.float32))
  if kind == 'depth':
    return (rgb,)
  return rgb, jnp.asarray(rng.uniform(size=(batch, NUM_CONTEXT, h, w, 3)).astype(np.float32))


def peak_memory_bytes():
  """Peak device memory if the backend reports it (GPU/TPU), else None."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def time_compiled(fn, args, iters, warmup):
  """(compile seconds, list of per-call seconds) of jit(fn) on args; results blocked on."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  memory = None
  with contextlib.suppress(Exception):
    analysis = compiled.memory_analysis()
    memory = int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes)
  return compile_s, times, memory


def latency_stats(times, items):
  return {'median_s': statistics.median(times), 'p90_s': float(np.percentile(times, 90)),
          'min_s': min(times), 'iters': len(times), 'frames_per_s': items / statistics.median(times)}


# ----------------------------------------------------------------------------
# forward


def bench_forward(name, shape, batch, dtype, iters, warmup):
  module, kind = build_network(name, DTYPES[dtype])
  inputs = network_inputs(kind, batch, shape)
  variables = random_variables(module, *inputs)

  def forward(variables, *inputs):
    return module.apply(variables, *inputs, train=False)
  compile_s, times, compiled_bytes = time_compiled(forward, (variables,) + inputs, iters, warmup)
  params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables.get('params', {})))
  return {'benchmark': 'forward', 'network': name, 'shape': list(shape), 'batch': batch, 'dtype': dtype,
          'compile_s': compile_s, 'peak_memory_bytes': peak_memory_bytes(),
          'compiled_memory_bytes': compiled_bytes, 'num_params': params, **latency_stats(times, batch)}


def torch_forward(name, shape, batch, iters, warmup, reference_path):
  """Times the PyTorch reference's forward (eval, no_grad) if torch and its code import; else a skip record."""
  record = {'benchmark': 'forward_torch', 'network': name, 'shape': list(shape), 'batch': batch}
  try:
    import torch  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, os.fspath(reference_path))
    kind, cls, version = NETWORKS[name]
    if kind == 'depth':
      module = __import__(f'packnet_sfm.networks.depth.{cls}', fromlist=[cls])
      net = getattr(module, cls)(version=version) if version else getattr(module, cls)()
    else:
      module = __import__(f'packnet_sfm.networks.pose.{cls}', fromlist=[cls])
      net = getattr(module, cls)(nb_ref_imgs=NUM_CONTEXT) if cls == 'PoseNet' else getattr(module, cls)(version=version)
  except Exception as e:  # pylint: disable=broad-except
    return dict(record, skipped=f'{type(e).__name__}: {e}')
  net.eval()
  h, w = shape
  rgb = torch.rand(batch, 3, h, w)
  args = (rgb,) if kind == 'depth' else (rgb, [torch.rand(batch, 3, h, w) for _ in range(NUM_CONTEXT)])
  times = []
  with torch.no_grad():
    for i in range(warmup + iters):
      start = time.perf_counter()
      net(*args)
      if i >= warmup:
        times.append(time.perf_counter() - start)
  return dict(record, torch=torch.__version__, threads=torch.get_num_threads(), **latency_stats(times, batch))


def cmd_forward(args):
  names = list(NETWORKS) if args.network == 'all' else args.network.split(',')
  shape = parse_shape(args.shape)
  records = []
  for name in names:
    rec = emit(bench_forward(name, shape, args.batch, args.dtype, args.iters, args.warmup))
    records.append(rec)
    if args.torch_reference:
      ref = torch_forward(name, shape, args.batch, args.iters, args.warmup, args.torch_reference)
      if 'median_s' in ref:
        ref['jax_over_torch_time'] = rec['median_s'] / ref['median_s']
      records.append(emit(ref))
  return records


# ----------------------------------------------------------------------------
# train_step


def load_config(path):
  """An ml_collections config from a configs/*.py file."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location('benchmark_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def bench_train_step(config, shape, batch, iters, warmup):
  from packnet_jax.models import registry, sfm_model  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import optim, train_state, train_step  # pylint: disable=import-outside-toplevel
  dtype = DTYPES[config.get('compute_dtype', 'float32')]
  m = config.model
  depth_net = registry.build_depth_net(m.depth_net.name, m.depth_net.version or None, dtype=dtype)
  pose_net = registry.build_pose_net(m.pose_net.name, m.pose_net.version or None, nb_ref_imgs=NUM_CONTEXT,
                                     dtype=dtype) if m.pose_net.name else None
  model = sfm_model.SfmModel(depth_net=depth_net, pose_net=pose_net,
                             upsample_depth_maps=m.loss.upsample_depth_maps, rotation_mode=m.loss.rotation_mode)
  h, w = shape
  rng = np.random.RandomState(0)
  rgb = rng.uniform(size=(batch, h, w, 3)).astype(np.float32)
  ctx = rng.uniform(size=(batch, NUM_CONTEXT, h, w, 3)).astype(np.float32)
  K = np.tile(np.asarray([[0.58 * w, 0, w / 2], [0, 1.92 * h, h / 2], [0, 0, 1]], np.float32), (batch, 1, 1))
  data = {'rgb': rgb, 'rgb_original': rgb, 'rgb_context': ctx, 'rgb_context_original': ctx, 'intrinsics': K}
  if m.name == 'SemiSupModel':
    data['depth'] = rng.uniform(1, 80, size=(batch, h, w, 1)).astype(np.float32)
  if m.name == 'VelSupModel':
    data['pose_context'] = np.tile(np.eye(4, dtype=np.float32), (batch, NUM_CONTEXT, 1, 1))
  variables = random_variables(model, jnp.asarray(rgb), jnp.asarray(ctx) if pose_net else None)
  tx, _ = optim.optimizer_from_config(config.optim, steps_per_epoch=1000)
  state = train_state.TrainState.create(params=variables['params'], batch_stats=variables.get('batch_stats', {}),
                                        tx=tx, rng=jax.random.PRNGKey(0))
  step = jax.jit(train_step.make_train_step(model, sfm_model.LossOptions.from_dict(m.name, m.loss),
                                            flip_lr_prob=m.loss.flip_lr_prob))
  data = jax.tree_util.tree_map(jnp.asarray, data)
  key = jax.random.PRNGKey(1)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(warmup + iters):
    start = time.perf_counter()
    state, metrics = compiled(state, data, key)
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {'benchmark': 'train_step', 'model': m.name, 'depth_net': m.depth_net.name, 'pose_net': m.pose_net.name,
          'shape': list(shape), 'batch': batch, 'dtype': config.get('compute_dtype', 'float32'),
          'compile_s': compile_s, 'median_s': median, 'p90_s': float(np.percentile(times, 90)),
          'steps_per_s': 1.0 / median, 'images_per_s': batch / median, 'iters': len(times),
          'peak_memory_bytes': peak_memory_bytes(), 'loss': float(metrics['loss'])}


def cmd_train_step(args):
  config = load_config(args.config)
  if args.dtype:
    config.compute_dtype = args.dtype
  shape = parse_shape(args.shape) if args.shape else tuple(config.datasets.augmentation.image_shape)
  return [emit(bench_train_step(config, shape, args.batch, args.iters, args.warmup))]


# ----------------------------------------------------------------------------
# data


def cmd_data(args):
  from packnet_jax.data import benchmark_pipeline  # pylint: disable=import-outside-toplevel
  shape = parse_shape(args.shape)
  with tempfile.TemporaryDirectory() as tmp:
    path, split = args.path, args.split
    if not path:
      sys.path.insert(0, str(ROOT / 'tools'))
      import make_synthetic_kitti  # pylint: disable=import-outside-toplevel
      path, split = os.path.join(tmp, 'kitti'), 'splits/train.txt'
      with contextlib.redirect_stdout(sys.stderr):
        make_synthetic_kitti.generate(path, frames=args.frames, height=shape[0], width=shape[1])
    config = {'dataset': 'KITTI', 'path': path, 'split': split, 'back_context': 1, 'forward_context': 1,
              'image_shape': shape, 'jittering': (0.2, 0.2, 0.2, 0.05)}
    result = benchmark_pipeline(config, batch_size=args.batch, num_devices=1, num_batches=args.batches,
                                warmup=args.warmup)
  return [emit({'benchmark': 'data', 'dataset': 'KITTI' if args.path else 'synthetic KITTI',
                'shape': list(shape), 'batch': args.batch, **result})]


# ----------------------------------------------------------------------------
# scaling


def cmd_scaling(args):
  """Weak scaling of a pmapped forward: per-device batch fixed, 1..N local devices."""
  shape = parse_shape(args.shape)
  module, kind = build_network(args.network, DTYPES[args.dtype])
  devices = jax.local_devices()
  counts = [n for n in (1, 2, 4, 8, 16, 32) if n <= len(devices)]
  if len(devices) not in counts:
    counts.append(len(devices))
  inputs = network_inputs(kind, args.batch, shape)
  variables = random_variables(module, *inputs)
  records, base = [], None
  for n in counts:
    fn = jax.pmap(lambda v, *x: module.apply(v, *x, train=False), devices=devices[:n])
    stacked = jax.tree_util.tree_map(lambda x, n=n: jnp.broadcast_to(x, (n,) + x.shape), (variables,) + inputs)
    start = time.perf_counter()
    jax.block_until_ready(fn(*stacked))
    compile_s = time.perf_counter() - start
    for _ in range(args.warmup):
      jax.block_until_ready(fn(*stacked))
    times = []
    for _ in range(args.iters):
      start = time.perf_counter()
      jax.block_until_ready(fn(*stacked))
      times.append(time.perf_counter() - start)
    stats = latency_stats(times, n * args.batch)
    base = base or stats['frames_per_s']
    records.append(emit({'benchmark': 'scaling', 'network': args.network, 'shape': list(shape),
                         'batch_per_device': args.batch, 'devices': n, 'dtype': args.dtype,
                         'first_call_s': compile_s, 'efficiency': stats['frames_per_s'] / (n * base), **stats}))
  return records


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)

  def timing(p):
    p.add_argument('--iters', type=int, default=5, help='timed iterations')
    p.add_argument('--warmup', type=int, default=1, help='untimed iterations after compilation')

  p = sub.add_parser('forward', help='eval-mode forward of each network')
  p.add_argument('--network', default='all', help=f'"all" or comma-separated of {",".join(NETWORKS)}')
  p.add_argument('--shape', default='192,640')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--dtype', default='float32', choices=sorted(DTYPES))
  p.add_argument('--torch_reference', default=None, help='path of a packnet-sfm checkout (optional)')
  timing(p)
  p = sub.add_parser('train_step', help='one self-supervised training step of a config')
  p.add_argument('--config', default=str(ROOT / 'configs' / 'kitti.py'))
  p.add_argument('--shape', default=None, help='H,W (default: the config image_shape)')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--dtype', default=None, choices=sorted(DTYPES), help='override config.compute_dtype')
  timing(p)
  p = sub.add_parser('data', help='training input pipeline throughput')
  p.add_argument('--path', default=None, help='KITTI raw root (default: a synthetic scene in a temp dir)')
  p.add_argument('--split', default='splits/train.txt')
  p.add_argument('--shape', default='96,320')
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--batches', type=int, default=10)
  p.add_argument('--frames', type=int, default=24, help='synthetic scene length')
  p.add_argument('--warmup', type=int, default=2)
  p = sub.add_parser('scaling', help='pmapped forward over 1..N local devices')
  p.add_argument('--network', default='DepthResNet18', choices=sorted(NETWORKS))
  p.add_argument('--shape', default='192,640')
  p.add_argument('--batch', type=int, default=1, help='per device')
  p.add_argument('--dtype', default='float32', choices=sorted(DTYPES))
  timing(p)
  args = parser.parse_args(argv)
  commands = {'forward': cmd_forward, 'train_step': cmd_train_step, 'data': cmd_data, 'scaling': cmd_scaling}
  return commands[args.command](args)


if __name__ == '__main__':
  main()
