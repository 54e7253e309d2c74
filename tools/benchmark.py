"""Benchmarks: network forward, train step, data pipeline, multi-device scaling.

  python tools/benchmark.py forward --network all --shape 192,640 [--batch 1 --dtype float32 --iters 5]
  python tools/benchmark.py forward --network PackNet01 --torch_reference --torch_source /path/to/packnet-sfm
  python tools/benchmark.py train_step --config configs/kitti.py --shape 192,640 --batch 4 --compile_only \
      [--set model.remat=full]
  python tools/benchmark.py train_step --config configs/kitti_resnet18.py --batch 2 --torch_reference
  python tools/benchmark.py data [--path KITTI_ROOT --split splits/train.txt] --shape 96,320
  python tools/benchmark.py data --source_shape 375,1242 --shape 192,640 --depth_type velodyne [--records]
  python tools/benchmark.py scaling --network DepthResNet18 --shape 192,640 --batch 1

Every measurement prints one JSON line with the device kind and library
versions. Compilation and warm-up iterations are excluded from the timings
(compile time is reported separately); every timed call is followed by
`block_until_ready`. Weights are random (timing does not depend on them) and
are made without running the initialiser. The XLA:CPU defaults of
`packnet_jax.utils.xla_flags` apply unless XLA_FLAGS is set.

`--torch_reference` also times the PyTorch reference doing the same work, in
the same process, taking turns with ours in blocks of calls (so both see the same
machine load), with torch on as many threads as the CPU cores XLA uses; the
reference's code comes from a packnet-sfm checkout given by `--torch_source`
or $PACKNET_SFM_SOURCE (see tools/torch_reference.py). Records then carry
`jax_over_torch_time` (< 1: ours is faster).
"""
import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / 'tools'):
  if str(_path) not in sys.path:
    sys.path.insert(0, str(_path))

from packnet_jax.utils import xla_flags  # noqa: E402  pylint: disable=wrong-import-position

xla_flags.apply_cpu_defaults()  # before the first computation creates the backend

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
          'flax': flax.__version__, 'numpy': np.__version__, 'python': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


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


def compiled_memory(compiled):
  """Compiled buffer sizes: temp, arguments, outputs, their sum, and outputs aliasing (donated) arguments.

  `device_memory_*` is what the program needs on the device: the sum less the
  outputs written into their (donated) arguments' buffers.
  """
  try:
    analysis = compiled.memory_analysis()
    sizes = {'temp_bytes': int(analysis.temp_size_in_bytes),
             'argument_bytes': int(analysis.argument_size_in_bytes),
             'output_bytes': int(analysis.output_size_in_bytes),
             'alias_bytes': int(analysis.alias_size_in_bytes)}
  except Exception:  # pylint: disable=broad-except
    return {}
  sizes['compiled_memory_bytes'] = sizes['temp_bytes'] + sizes['argument_bytes'] + sizes['output_bytes']
  sizes['compiled_memory_gib'] = sizes['compiled_memory_bytes'] / 2**30
  sizes['device_memory_bytes'] = sizes['compiled_memory_bytes'] - sizes['alias_bytes']
  sizes['device_memory_gib'] = sizes['device_memory_bytes'] / 2**30
  return sizes


def interleaved_times(fns, iters, warmup, settle_s=0.0, block=1):
  """Per-fn lists of `iters` call times: `warmup` untimed rounds, then the fns take turns in blocks.

  Each turn is `block` back-to-back timed calls (plus one untimed call first when
  block > 1), after a `settle_s` pause. Turns keep both libraries under the same
  machine load; the pause and the untimed first call keep one library's
  spinning worker threads and cold caches out of the other's timings (torch
  measured 3x slower right after an XLA call on 2 cores, and XLA ~40% slower on
  the first call after a pause), so the figures are steady-state call times.
  """
  for _ in range(warmup):
    for fn in fns:
      fn()
  times = [[] for _ in fns]
  while len(times[0]) < iters:
    for fn, out in zip(fns, times):
      if settle_s:
        time.sleep(settle_s)
      if block > 1:
        fn()
      for _ in range(min(block, iters - len(out))):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
  return times


SETTLE_S = 0.5  # pause between the two libraries' turns (see `interleaved_times`)
TURN = 5  # timed calls per turn


def library_times(fns, iters, warmup):
  """`interleaved_times`, taking paused turns of TURN calls when several libraries are compared."""
  return interleaved_times(fns, iters, warmup, *((SETTLE_S, TURN) if len(fns) > 1 else ()))


def cpu_threads():
  """CPU cores XLA:CPU runs on (its thread pool covers the process's CPU affinity)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def import_torch(torch_source):
  """(torch, tools/torch_reference) with the reference importable and torch on `cpu_threads()` threads."""
  import torch_reference  # pylint: disable=import-outside-toplevel
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise SystemExit('error: --torch_reference: torch is not installed (pip install torch, CPU wheel)') from None
  try:
    torch_reference.import_reference(torch_source)
  except (ValueError, ImportError) as e:
    raise SystemExit(f'error: {e}') from None
  torch.set_num_threads(cpu_threads())
  return torch, torch_reference


def latency_stats(times, items):
  return {'median_s': statistics.median(times), 'p90_s': float(np.percentile(times, 90)),
          'min_s': min(times), 'iters': len(times), 'frames_per_s': items / statistics.median(times)}


# ----------------------------------------------------------------------------
# forward


def bench_forward(name, shape, batch, dtype, iters, warmup, torch_source=None):
  """Forward record of `name`; with `torch_source`, also the reference's record, timed interleaved."""
  module, kind = build_network(name, DTYPES[dtype])
  inputs = network_inputs(kind, batch, shape)
  variables = random_variables(module, *inputs)

  def forward(variables, *inputs):
    return module.apply(variables, *inputs, train=False)
  start = time.perf_counter()
  compiled = jax.jit(forward).lower(variables, *inputs).compile()
  compile_s = time.perf_counter() - start
  fns = [lambda: jax.block_until_ready(compiled(variables, *inputs))]
  if torch_source is not None:
    fns.append(torch_forward_fn(name, shape, batch, torch_source))
  times = library_times(fns, iters, warmup)
  params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables.get('params', {})))
  record = {'benchmark': 'forward', 'network': name, 'shape': list(shape), 'batch': batch, 'dtype': dtype,
            'compile_s': compile_s, 'peak_memory_bytes': peak_memory_bytes(),
            'compiled_memory_bytes': compiled_memory(compiled).get('compiled_memory_bytes'),
            'num_params': params, **latency_stats(times[0], batch)}
  if torch_source is None:
    return [record]
  import torch  # pylint: disable=import-outside-toplevel
  reference = {'benchmark': 'forward_torch', 'network': name, 'shape': list(shape), 'batch': batch,
               'torch': torch.__version__, 'threads': torch.get_num_threads(), **latency_stats(times[1], batch)}
  record['jax_over_torch_time'] = reference['jax_over_torch_time'] = record['median_s'] / reference['median_s']
  return [record, reference]


def torch_forward_fn(name, shape, batch, torch_source):
  """A no-arg function running the reference network's eval forward (no_grad) on random NCHW inputs."""
  torch, torch_reference = import_torch(torch_source)
  _, cls, version = NETWORKS[name]
  net = torch_reference.build_network(cls, version, nb_ref_imgs=NUM_CONTEXT).eval()
  h, w = shape
  rgb = torch.rand(batch, 3, h, w)
  args = (rgb,) if not cls.startswith('Pose') else (rgb, [torch.rand(batch, 3, h, w) for _ in range(NUM_CONTEXT)])

  def run():
    with torch.no_grad():
      net(*args)
  return run


def cmd_forward(args):
  names = list(NETWORKS) if args.network == 'all' else args.network.split(',')
  shape = parse_shape(args.shape)
  torch_source = (args.torch_source or '') if args.torch_reference else None
  records = []
  for name in names:
    for record in bench_forward(name, shape, args.batch, args.dtype, args.iters, args.warmup, torch_source):
      records.append(emit(record))
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


def apply_overrides(config, overrides):
  """`--set key=value` pairs onto the config (values parsed as Python literals, else strings)."""
  import ast  # pylint: disable=import-outside-toplevel
  for item in overrides or ():
    key, sep, text = item.partition('=')
    if not sep:
      raise SystemExit(f'error: --set: expected KEY=VALUE, got {item!r}')
    node, *path = key.split('.')
    parent = config
    for part in [node] + path[:-1]:
      if part not in parent:
        raise SystemExit(f'error: --set: {key}: unknown key (not in configs/default.py)')
      parent = parent[part]
    leaf = (path or [node])[-1]
    if leaf not in parent:
      raise SystemExit(f'error: --set: {key}: unknown key (not in configs/default.py)')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    if isinstance(parent[leaf], str) and not isinstance(value, str):
      value = text  # a string field keeps the text as given (e.g. version=18)
    try:
      parent[leaf] = value
    except TypeError as e:
      raise SystemExit(f'error: --set: {key}: {e}') from None
  return config


def train_step_batch(config, shape, batch, seed=0):
  """A random batch with the keys the configured model reads (numpy, NHWC)."""
  from packnet_jax.train import model_init  # pylint: disable=import-outside-toplevel
  h, w = shape
  n = max(1, model_init.num_contexts(config))
  rng = np.random.RandomState(seed)
  rgb = rng.uniform(size=(batch, h, w, 3)).astype(np.float32)
  ctx = rng.uniform(size=(batch, n, h, w, 3)).astype(np.float32)
  K = np.tile(np.asarray([[0.58 * w, 0, w / 2], [0, 1.92 * h, h / 2], [0, 0, 1]], np.float32), (batch, 1, 1))
  data = {'rgb': rgb, 'rgb_original': rgb, 'rgb_context': ctx, 'rgb_context_original': ctx, 'intrinsics': K}
  if config.model.name == 'SemiSupModel':
    data['depth'] = rng.uniform(1, 80, size=(batch, h, w, 1)).astype(np.float32)
  if config.model.name == 'VelSupModel':
    data['pose_context'] = np.tile(np.eye(4, dtype=np.float32), (batch, n, 1, 1))
  return data


def compile_train_step(config, shape, batch):
  """(compiled step, state, device batch, rng, compile seconds) built as training builds it.

  The model comes from `model_init.build_model(config)` and the step from
  `train_step.make_train_step` (jitted with the state donated, as in training);
  only the weights are random instead of initialised.
  """
  from packnet_jax.train import model_init, optim, train_state, train_step  # pylint: disable=import-outside-toplevel
  model = model_init.build_model(config)
  data = train_step_batch(config, shape, batch)
  variables = random_variables(model, jnp.asarray(data['rgb']),
                               jnp.asarray(data['rgb_context']) if model.pose_net is not None else None)
  tx, _ = optim.optimizer_from_config(config.optim, steps_per_epoch=1000)
  state = train_state.TrainState.create(params=variables['params'], batch_stats=variables.get('batch_stats', {}),
                                        tx=tx, rng=jax.random.PRNGKey(0))
  step = train_step.jit_train_step(train_step.make_train_step(
      model, model_init.loss_options(config), flip_lr_prob=config.model.loss.flip_lr_prob))
  data = jax.tree_util.tree_map(jnp.asarray, train_step.model_inputs(data))
  key = jax.random.PRNGKey(1)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  return compiled, state, data, key, time.perf_counter() - start


def bench_train_step(config, shape, batch, iters, warmup, compile_only=False, torch_source=None):
  """Train-step records: compiled memory, and unless `compile_only` the step time (and the reference's)."""
  compiled, state, data, key, compile_s = compile_train_step(config, shape, batch)
  m = config.model
  record = {'benchmark': 'train_step', 'model': m.name, 'depth_net': m.depth_net.name, 'pose_net': m.pose_net.name,
            'shape': list(shape), 'batch': batch, 'dtype': config.compute_dtype, 'remat': m.remat,
            'compile_s': compile_s, **compiled_memory(compiled)}
  if compile_only:
    return [record]
  holder = {'state': state}

  def ours():
    holder['state'], holder['metrics'] = compiled(holder['state'], data, key)
    jax.block_until_ready((holder['state'], holder['metrics']))
  fns = [ours]
  if torch_source is not None:
    fns.append(torch_train_step_fn(config, shape, batch, torch_source))
  times = library_times(fns, iters, warmup)
  median = statistics.median(times[0])
  record.update({'median_s': median, 'p90_s': float(np.percentile(times[0], 90)), 'steps_per_s': 1.0 / median,
                 'images_per_s': batch / median, 'iters': len(times[0]),
                 'peak_memory_bytes': peak_memory_bytes(), 'loss': float(holder['metrics']['loss'])})
  if torch_source is None:
    return [record]
  import torch  # pylint: disable=import-outside-toplevel
  reference = {'benchmark': 'train_step_torch', 'model': m.name, 'depth_net': m.depth_net.name,
               'pose_net': m.pose_net.name, 'shape': list(shape), 'batch': batch, 'torch': torch.__version__,
               'threads': torch.get_num_threads(), 'median_s': statistics.median(times[1]),
               'p90_s': float(np.percentile(times[1], 90)), 'iters': len(times[1])}
  record['jax_over_torch_time'] = reference['jax_over_torch_time'] = median / reference['median_s']
  return [record, reference]


def torch_train_step_fn(config, shape, batch, torch_source):
  """A no-arg function running one reference training step (forward, loss, backward, Adam) of SelfSupModel."""
  torch, torch_reference = import_torch(torch_source)
  m = config.model
  if m.name != 'SelfSupModel':
    raise SystemExit(f'error: --torch_reference: only SelfSupModel train steps are compared, got {m.name!r}')
  n = NUM_CONTEXT
  # Weights are random on both sides: a 'pt' (ImageNet) version is timed as the plain one.
  depth_net = torch_reference.build_network(m.depth_net.name, _without_pt(m.depth_net.version))
  pose_net = torch_reference.build_network(m.pose_net.name, _without_pt(m.pose_net.version), nb_ref_imgs=n)
  model = torch_reference.build_selfsup_model(depth_net, pose_net, m.loss.to_dict()).train()
  optimizer = torch.optim.Adam([{'params': depth_net.parameters(), 'lr': config.optim.depth.lr},
                                {'params': pose_net.parameters(), 'lr': config.optim.pose.lr}])
  data = {k: torch.from_numpy(v) for k, v in train_step_batch(config, shape, batch).items()}
  nchw = {'rgb': data['rgb'].permute(0, 3, 1, 2).contiguous(),
          'rgb_context': [data['rgb_context'][:, j].permute(0, 3, 1, 2).contiguous() for j in range(n)],
          'intrinsics': data['intrinsics']}
  nchw['rgb_original'], nchw['rgb_context_original'] = nchw['rgb'], nchw['rgb_context']

  def step():
    optimizer.zero_grad()
    model(nchw)['loss'].backward()
    optimizer.step()
  return step


def _without_pt(version):
  version = str(version or '')
  return (version[:-2] if version.endswith('pt') else version) or None


def cmd_train_step(args):
  config = apply_overrides(load_config(args.config), args.set)
  if args.dtype:
    config.compute_dtype = args.dtype
  if args.remat:
    config.model.remat = args.remat
  if args.torch_reference and args.compile_only:
    raise SystemExit('error: --torch_reference times the step; it cannot be combined with --compile_only')
  shape = parse_shape(args.shape) if args.shape else tuple(config.datasets.augmentation.image_shape)
  torch_source = (args.torch_source or '') if args.torch_reference else None
  records = bench_train_step(config, shape, args.batch, args.iters, args.warmup, args.compile_only, torch_source)
  return [emit(r) for r in records]


# ----------------------------------------------------------------------------
# data


def cmd_data(args):
  """Host pipeline samples/s (per CPU core), and the device cost of the colour jitter it leaves to the step."""
  from packnet_jax.data import benchmark_pipeline  # pylint: disable=import-outside-toplevel
  shape = parse_shape(args.shape)
  source_shape = parse_shape(args.source_shape) if args.source_shape else shape
  jittering = tuple(float(v) for v in args.jittering.split(',') if v.strip())
  with tempfile.TemporaryDirectory() as tmp:
    path, split = args.path, args.split
    if not path:
      # Written by another process, like a user's dataset on disk: generating the scene in this
      # process first measured the pipeline at about half its rate (57-61 vs 119-126 samples
      # per CPU-second for the same records; allocator state, not isolated).
      path, split = os.path.join(tmp, 'kitti'), 'splits/train.txt'
      subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_synthetic_kitti.py'), '--output', path,
                      '--frames', str(args.frames), '--height', str(source_shape[0]),
                      '--width', str(source_shape[1])], stdout=sys.stderr, check=True)
    config = {'dataset': 'KITTI', 'path': path, 'split': split, 'back_context': 1, 'forward_context': 1,
              'depth_type': args.depth_type, 'image_shape': shape, 'jittering': jittering}
    if args.records:  # records at training resolution: crop + resize done once, when written
      from packnet_jax.data import tfds_builders  # pylint: disable=import-outside-toplevel
      with contextlib.redirect_stdout(sys.stderr):
        builder = tfds_builders.prepare('KITTI', path, os.path.join(tmp, 'tfds'), config='synthetic',
                                        splits={'train': split}, depth_type=args.depth_type,
                                        with_pose=False, image_shape=shape, name=f'bench_{shape[0]}x{shape[1]}')
      config.update(tfds_data_dir=os.path.join(tmp, 'tfds'), tfds_config=builder.builder_config.name)
    result = benchmark_pipeline(config, batch_size=args.batch, num_devices=1, num_batches=args.batches,
                                warmup=args.warmup)
    if jittering and args.device_iters:
      result.update(device_jitter_cost(config, args.batch, args.device_iters))
  return [emit({'benchmark': 'data', 'dataset': 'KITTI' if args.path else 'synthetic KITTI',
                'records': bool(args.records), 'source_shape': list(source_shape), 'shape': list(shape),
                'jittering': list(jittering), 'batch': args.batch, **result})]


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

  def torch_flags(p):
    p.add_argument('--torch_reference', action='store_true',
                   help='also time the PyTorch reference (same work, same run, interleaved)')
    p.add_argument('--torch_source', default=None,
                   help='packnet-sfm checkout for --torch_reference (default: $PACKNET_SFM_SOURCE)')

  p = sub.add_parser('forward', help='eval-mode forward of each network')
  p.add_argument('--network', default='all', help=f'"all" or comma-separated of {",".join(NETWORKS)}')
  p.add_argument('--shape', default='192,640')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--dtype', default='float32', choices=sorted(DTYPES))
  torch_flags(p)
  timing(p)
  p = sub.add_parser('train_step', help='one self-supervised training step of a config')
  p.add_argument('--config', default=str(ROOT / 'configs' / 'kitti.py'))
  p.add_argument('--set', action='append', metavar='KEY=VALUE', help='config override (repeatable)')
  p.add_argument('--shape', default=None, help='H,W (default: the config image_shape)')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--dtype', default=None, choices=sorted(DTYPES), help='override config.compute_dtype')
  p.add_argument('--remat', default=None, choices=('none', 'full', 'save_conv'), help='override model.remat')
  p.add_argument('--compile_only', action='store_true', help='report compiled memory, do not run the step')
  p.set_defaults(warmup=2)  # torch's first steps allocate and build kernels
  torch_flags(p)
  timing(p)
  p = sub.add_parser('data', help='training input pipeline throughput (+ the device cost of its colour jitter)')
  p.add_argument('--path', default=None, help='KITTI raw root (default: a synthetic scene in a temp dir)')
  p.add_argument('--split', default='splits/train.txt')
  p.add_argument('--shape', default='96,320', help='H,W: training resolution')
  p.add_argument('--source_shape', default=None,
                 help='H,W of the synthetic frames (default: --shape); e.g. 375,1242 to resize like KITTI')
  p.add_argument('--records', action='store_true',
                 help='read records prepared at --shape (tfds_builders.prepare, in the temp dir) instead of PNGs')
  p.add_argument('--depth_type', default='', help="depth loaded with each sample ('' = none, e.g. velodyne)")
  p.add_argument('--jittering', default='0.2,0.2,0.2,0.05', help="colour jitter values ('' = off)")
  p.add_argument('--device_iters', type=int, default=10,
                 help="timed calls of the train step's colour jitter on one batch (0 = skip)")
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
