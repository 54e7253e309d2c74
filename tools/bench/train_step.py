"""`train_step`: one training step of a config, built as training builds it: compiled memory and time.

The config is a configs/*.py file with `--config.KEY=VALUE` overrides, as for
training (e.g. `--config.model.remat=full`, `--config.compute_dtype=bfloat16`).
"""
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from bench import networks, records, timing, torch_side
from packnet_jax import cli

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / 'configs' / 'kitti.py'


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues; unknown config keys fail first."""
  cli.check_config_keys(argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', str(DEFAULT_CONFIG), 'experiment config file (configs/*.py)',
                                  flag_values=fv, lock_config=True, sys_argv=list(argv))
  flags.DEFINE_string('shape', None, "H,W network input, multiples of 32 (default: the config's "
                      'datasets.augmentation.image_shape)', flag_values=fv)
  flags.DEFINE_integer('batch', 1, 'batch size', lower_bound=1, flag_values=fv)
  flags.DEFINE_bool('compile_only', False, 'report compiled memory, do not run the step', flag_values=fv)
  torch_side.define_flags(fv)
  timing.define_flags(fv, warmup=2)  # torch's first steps allocate and build kernels
  fv(argv)
  return fv


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
  variables = networks.random_variables(model, jnp.asarray(data['rgb']),
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
            'compile_s': compile_s, **records.compiled_memory(compiled)}
  if compile_only:
    return [record]
  holder = {'state': state}

  def ours():
    holder['state'], holder['metrics'] = compiled(holder['state'], data, key)
    jax.block_until_ready((holder['state'], holder['metrics']))
  fns = [ours]
  if torch_source is not None:
    fns.append(torch_train_step_fn(config, shape, batch, torch_source))
  times = timing.library_times(fns, iters, warmup)
  median = statistics.median(times[0])
  record.update({'median_s': median, 'p90_s': float(np.percentile(times[0], 90)), 'steps_per_s': 1.0 / median,
                 'images_per_s': batch / median, 'iters': len(times[0]),
                 'peak_memory_bytes': records.peak_memory_bytes(), 'loss': float(holder['metrics']['loss'])})
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
  m = config.model
  if m.name != 'SelfSupModel':
    raise ValueError(f'--torch_reference: only SelfSupModel train steps are compared, got {m.name!r}')
  torch, torch_reference = torch_side.import_torch(torch_source)
  n = networks.NUM_CONTEXT
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


def run(fv):
  """The step's record (and the reference's with --torch_reference), printed."""
  from packnet_jax import config_utils  # pylint: disable=import-outside-toplevel
  config = config_utils.validate_config(fv.config)
  if fv.torch_reference and fv.compile_only:
    raise ValueError('--torch_reference times the step; it cannot be combined with --compile_only')
  shape = cli.parse_image_shape(fv.shape, '--shape') or tuple(config.datasets.augmentation.image_shape)
  out = bench_train_step(config, shape, fv.batch, fv.iters, fv.warmup, fv.compile_only, torch_side.source(fv))
  return [records.emit(r) for r in out]
