"""Float32-vs-float64 noise of 5 Adam steps of the self-supervised objective: the shared set-up and the port's run.

The same start is trained for `STEPS` steps twice, in float32 and in float64, and every step is
compared: the loss, the gradient of every parameter tensor and every parameter after the update.
Rounding is the only difference between the two runs, so the float32 run's distance from the
float64 one is its noise; torch's own distance (tools/make_noise_fixture.py, vendored in
tests/fixtures/reference/training_noise.json) says how much noise an exact port may show.

Scenarios (`SCENARIOS`): the start is the recipe weights of the parity fixtures ('checkpoint',
tests/lib/recipe.py, loaded identically by both sides) or each side's own random initialisation
('random'); the batch is plain (no flip, no jitter) or augmented: the depth net sees the flipped,
colour-jittered images with a fixed flip decision and fixed per-sample jitter factors (the
reference's flip forced with flip_lr_prob 1, its jitter run by PIL, ours by the device jitter that
tests/test_jitter_exact.py proves equal to PIL's). The input is the batch of the
`selfsup_model_step` fixture (2 samples, 64x192, 2 contexts) quantised to 8-bit levels.

Per step, over all parameter tensors with a non-zero float64 gradient: the median and 90th
percentile of ||a32 − a64|| / ||a64|| for the gradients and for the parameters after the step.

numpy only at import: the torch generator imports this file too.
"""
import contextlib
import functools
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / 'tests' / 'fixtures' / 'reference'
FIXTURE = FIXTURES / 'training_noise.json'
STEPS = 5
SEED = 0  # random initialisation (each side its own generator)
SCENARIOS = ('checkpoint/plain', 'checkpoint/augmented', 'random/plain', 'random/augmented')
# Fixed colour jitter per sample (factors as `jitter.sample_jitter_params` draws them for the
# reference's (0.2, 0.2, 0.2, 0.05), and an op order), the same for a sample's target and contexts.
JITTER = (
    ({'brightness': 1.13, 'contrast': 0.87, 'saturation': 1.16, 'hue': 0.031},
     ('contrast', 'brightness', 'hue', 'saturation')),
    ({'brightness': 0.85, 'contrast': 1.08, 'saturation': 0.9, 'hue': -0.042},
     ('hue', 'saturation', 'contrast', 'brightness')),
)
# Depth-net name and version → the fixture manifest with its torch state-dict keys (recipe weights).
MANIFESTS = {('DepthResNet', '18'): 'DepthResNet18', ('DepthResNet', '50'): 'DepthResNet50',
             ('PackNet01', '1A'): 'PackNet01_1A', ('PackNet01', '1B'): 'PackNet01_1B',
             ('PackNetSlim01', '1A'): 'PackNetSlim01_1A'}


def default_config():
  """configs/default.py (loss options and Adam settings shared with the reference run)."""
  sys.path.insert(0, str(REPO))
  from configs import default  # pylint: disable=import-outside-toplevel
  return default.get_config()


def originals():
  """The fixture batch as 8-bit levels: target [B,H,W,3], contexts [B,N,H,W,3] (uint8), intrinsics [B,3,3]."""
  fix = np.load(FIXTURES / 'selfsup_model_step.npz')
  def levels(x):
    return np.round(np.asarray(x, np.float64) * 255).astype(np.uint8)
  target = levels(np.transpose(fix['rgb'], (0, 2, 3, 1)))
  contexts = levels(np.stack([np.transpose(c, (0, 2, 3, 1)) for c in fix['rgb_context']], axis=1))
  return target, contexts, np.asarray(fix['intrinsics'], np.float32)


def unit(levels):
  """uint8 level k → float32 k/255 (torchvision's ToTensor)."""
  return np.asarray(levels, np.float32) / np.float32(255)


def recipe_manifest(name):
  """[(torch key, shape)] of a network's state dict, from its fixture manifest."""
  import json  # pylint: disable=import-outside-toplevel
  entries = json.loads((FIXTURES / f'net_{name}.json').read_text())['state_dict']
  return [(e['key'], tuple(e['shape'])) for e in entries]


def recipe_state_dict(name):
  """The recipe weights of a network (torch layout), as tests/lib/recipe.py makes them."""
  sys.path.insert(0, str(REPO / 'tests'))
  from lib import recipe  # pylint: disable=import-outside-toplevel
  return recipe.recipe_state_dict(recipe_manifest(name))


def relative_differences(a32, a64):
  """||a32 − a64|| / ||a64|| per name, over the names whose float64 value is not all zero."""
  out = {}
  for name, b in a64.items():
    b = np.asarray(b, np.float64)
    norm = np.linalg.norm(b)
    if norm > 0:
      out[name] = float(np.linalg.norm(np.asarray(a32[name], np.float64) - b) / norm)
  return out


def summarise(rel):
  values = np.array(sorted(rel.values()))
  return {'median': float(np.median(values)), 'p90': float(np.percentile(values, 90)),
          'max': float(values.max()), 'tensors': int(values.size)}


def step_figures(run32, run64):
  """Per-step figures of two runs, each a list of {'loss', 'grads': {name: array}, 'params': {...}}."""
  figures = []
  for s32, s64 in zip(run32, run64, strict=True):
    diff = abs(float(s32['loss']) - float(s64['loss']))
    figures.append({'loss32': float(s32['loss']), 'loss64': float(s64['loss']),
                    'loss_abs': diff, 'loss_rel': diff / abs(float(s64['loss'])),
                    'grads': summarise(relative_differences(s32['grads'], s64['grads'])),
                    'params': summarise(relative_differences(s32['params'], s64['params']))})
  return figures


# ----------------------------------------------------------------------------
# The port's run.


def _flat(tree):
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  return {'/'.join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def build(depth_net='DepthResNet', version='18'):
  """(SfmModel factory by dtype, loss options, optax Adam) as configs/default.py sets them."""
  from packnet_jax.losses import objective  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import sfm_model  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import optim  # pylint: disable=import-outside-toplevel
  config = default_config()
  loss = config.model.loss

  def model(dtype):
    return sfm_model.SfmModel(depth_net=registry.build_depth_net(depth_net, version, dtype=dtype),
                              pose_net=registry.build_pose_net('PoseNet', dtype=dtype),
                              upsample_depth_maps=loss.upsample_depth_maps, rotation_mode=loss.rotation_mode)
  opts = objective.LossOptions.from_dict('SelfSupModel', loss.to_dict())
  tx, _ = optim.create_optimizer(depth_lr=config.optim.depth.lr, pose_lr=config.optim.pose.lr)
  return model, opts, tx


def start_variables(model, start, depth_net='DepthResNet', version='18'):
  """float32 starting variables: the recipe weights ('checkpoint') or our own init ('random', seed SEED)."""
  import jax  # pylint: disable=import-outside-toplevel
  from packnet_jax.convert import keymap  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import sfm_model  # pylint: disable=import-outside-toplevel
  target, _, _ = originals()
  shape = target.shape[1:3]
  if start == 'random':
    variables = jax.device_get(sfm_model.init_variables(model, jax.random.PRNGKey(SEED), shape))
    return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}
  template = jax.eval_shape(lambda r: sfm_model.init_variables(model, r, shape), jax.random.PRNGKey(0))
  variables = {'params': {}, 'batch_stats': {}}
  for net, name in (('depth_net', MANIFESTS[(depth_net, version)]), ('pose_net', 'PoseNet')):
    sub = {col: template[col][net] for col in template if net in template[col]}
    filled, missing, _ = keymap.torch_state_dict_to_variables(recipe_state_dict(name), sub)
    if missing:
      raise ValueError(f'recipe weights of {name}: missing {missing[:3]}')
    for col, tree in filled.items():
      variables[col][net] = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), tree)
  return variables


def batch(augmented):
  """The step's batch (float32 numpy, NHWC) and the flip decision."""
  import jax  # pylint: disable=import-outside-toplevel
  from packnet_jax.data import jitter  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import train_step  # pylint: disable=import-outside-toplevel
  target, contexts, K = originals()
  out = {'rgb_original': unit(target), 'rgb_context_original': unit(contexts), 'intrinsics': K}
  if not augmented:
    return dict(out, rgb=out['rgb_original'], rgb_context=out['rgb_context_original']), False
  params = [jitter.jitter_arrays(factors, order) for factors, order in JITTER]
  params = {k: np.stack([p[k] for p in params]) for k in jitter.PARAM_KEYS}
  jittered = jax.device_get(jax.jit(train_step.apply_colour_jitter)(dict(out, **params)))
  return dict(out, rgb=np.asarray(jittered['rgb']), rgb_context=np.asarray(jittered['rgb_context'])), True


@functools.lru_cache(maxsize=None)
def _compiled_step(depth_net, version, dtype):
  """(jitted step, optax Adam) for one network pair and dtype: one compilation serves every scenario.

  step(params, batch_stats, opt_state, batch, flip) → (loss, grads, params, batch_stats, opt_state):
  the train step's forward and backward, and Adam's update (without the non-finite guard and the
  in-place ordering of train/guarded_update.py, which do not change a value).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from packnet_jax.losses import objective  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  make_model, opts, tx = build(depth_net, version)
  model = make_model(registry.dtype(dtype))

  @jax.jit
  def step(params, batch_stats, opt_state, batch, flip):
    def loss_fn(p):
      variables = {'params': p, **({'batch_stats': batch_stats} if batch_stats else {})}
      (inv_depths, poses), updates = model.apply(variables, batch['rgb'], batch['rgb_context'], flip=flip,
                                                 train=True, mutable=['batch_stats'])
      loss, _ = objective.sfm_loss(inv_depths, poses, batch, opts)
      return loss, updates.get('batch_stats', {})
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return loss, grads, optax.apply_updates(params, updates), new_stats, opt_state
  return step, tx


def run_port(dtype, variables, batch_, flip, depth_net='DepthResNet', version='18', steps=STEPS):
  """`steps` Adam steps in 'float32' or 'float64' from float32 `variables`; per step loss, grads, params.

  float64 runs inside jax.enable_x64 (float32 runs outside it, as training does) from the same
  float32 numbers, cast.
  """
  import jax  # pylint: disable=import-outside-toplevel
  float64 = dtype == 'float64'
  np_dtype = np.float64 if float64 else np.float32

  def cast(tree):
    return jax.tree_util.tree_map(lambda x: jax.numpy.asarray(np.asarray(x, np_dtype)), tree)
  with jax.enable_x64(True) if float64 else contextlib.nullcontext():
    step, tx = _compiled_step(depth_net, version, dtype)
    params, stats, inputs = cast(variables['params']), cast(variables['batch_stats']), cast(batch_)
    opt_state = jax.jit(tx.init)(params)
    records = []
    for _ in range(steps):
      loss, grads, params, stats, opt_state = step(params, stats, opt_state, inputs, jax.numpy.asarray(flip))
      records.append({'loss': float(loss), 'dtype': str(loss.dtype), 'grads': _flat(jax.device_get(grads)),
                      'params': _flat(jax.device_get(params))})
  return records


def port_figures(scenario, depth_net='DepthResNet', version='18', steps=STEPS):
  """step_figures of the port for `scenario` ('checkpoint/plain', ...)."""
  start, augmentation = scenario.split('/')
  make_model, _, _ = build(depth_net, version)
  variables = start_variables(make_model(np.float32), start, depth_net, version)
  inputs, flip = batch(augmentation == 'augmented')
  runs = {dtype: run_port(dtype, variables, inputs, flip, depth_net, version, steps)
          for dtype in ('float32', 'float64')}
  return step_figures(runs['float32'], runs['float64'])


# ----------------------------------------------------------------------------
# The comparison (python tools/measure_noise.py training ...).

COLUMNS = (('loss_abs', 'loss |d|'), ('loss_rel', 'loss rel'), ('grads.median', 'grad med'),
           ('grads.p90', 'grad p90'), ('params.median', 'param med'), ('params.p90', 'param p90'))


def figure(step, key):
  node = step
  for part in key.split('.'):
    node = node[part]
  return node


def print_table(port, torch=None):
  """One line per scenario and step: each figure as port / torch (ratio port ÷ torch)."""
  print(f'{"scenario":<22}{"step":>4}  ' + '  '.join(f'{title + " port/torch (x)":>29}' for _, title in COLUMNS))
  for scenario, steps in port.items():
    ref = (torch or {}).get(scenario)
    for i, step in enumerate(steps):
      cells = []
      for key, _ in COLUMNS:
        ours = figure(step, key)
        if ref is None:
          cells.append(f'{ours:9.2e} /    --   (  -- )')
        else:
          theirs = figure(ref[i], key)
          ratio = ours / theirs if theirs else float('inf')
          cells.append(f'{ours:9.2e} / {theirs:8.2e} ({ratio:5.2f})')
      print(f'{scenario:<22}{i + 1:>4}  ' + '  '.join(f'{c:>29}' for c in cells))


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  fv = flags.FlagValues()
  flags.DEFINE_enum('depth_net', 'DepthResNet', sorted({n for n, _ in MANIFESTS}), 'depth network',
                    flag_values=fv)
  flags.DEFINE_string('version', None, "'18' for DepthResNet, '1A' for PackNets", flag_values=fv)
  flags.DEFINE_multi_enum('scenario', None, list(SCENARIOS), 'repeatable; default all', flag_values=fv)
  flags.DEFINE_string('json', None, 'write the port figures to this file', flag_values=fv)
  fv(argv)
  return fv


def main(argv=None):
  """`measure_noise.py training`: float32-vs-float64 noise of 5 Adam steps, port next to torch."""
  from packnet_jax import cli  # pylint: disable=import-outside-toplevel
  return cli.run_main(parse_flags, _run, argv)


def _run(args):
  import json  # pylint: disable=import-outside-toplevel
  version = args.version or ('18' if args.depth_net == 'DepthResNet' else '1A')
  if (args.depth_net, version) not in MANIFESTS:
    raise ValueError(f'--version: {args.depth_net} has recipe weights for versions '
                     f'{sorted(v for n, v in MANIFESTS if n == args.depth_net)}, got {version!r}')
  torch = None
  if (args.depth_net, version) == ('DepthResNet', '18') and FIXTURE.exists():
    torch = json.loads(FIXTURE.read_text())['scenarios']  # the reference was run with DepthResNet18
  port = {}
  for scenario in args.scenario or SCENARIOS:
    port[scenario] = port_figures(scenario, args.depth_net, version)
    print(f'measured {scenario}', file=sys.stderr, flush=True)
  print(f'{args.depth_net} {version} + PoseNet, {STEPS} Adam steps, float32 vs float64; '
        f'torch: {"tests/fixtures/reference/training_noise.json" if torch else "none for this depth net"}')
  print_table(port, torch)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(port, indent=1) + '\n')
  return 0
