"""The benchmarked networks, built by the model registry, with random weights (no initialiser run)."""
import jax
import jax.numpy as jnp
import numpy as np

from packnet_jax.models import registry

# name → (registry kind, class name, version); the reference's table (docs/reference.md §10) order.
NETWORKS = {
    'PackNet01': ('depth', 'PackNet01', '1A'),
    'PackNetSlim01': ('depth', 'PackNetSlim01', '1A'),
    'DepthResNet18': ('depth', 'DepthResNet', '18'),
    'DepthResNet50': ('depth', 'DepthResNet', '50'),
    'PoseNet': ('pose', 'PoseNet', None),
    'PoseResNet18': ('pose', 'PoseResNet', '18'),
}
NUM_CONTEXT = 2


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


def network_names(text):
  """'all' or a comma-separated list → the names, each checked against NETWORKS."""
  names = list(NETWORKS) if text == 'all' else [n.strip() for n in text.split(',')]
  for name in names:
    if name not in NETWORKS:
      raise ValueError(f'--network: expected "all" or one of {sorted(NETWORKS)}, got {name!r}')
  return names


def build_network(name, dtype='float32'):
  """(module, kind) of a NETWORKS entry; dtype is a registry.DTYPES name."""
  kind, cls, version = NETWORKS[network_names(name)[0]]
  dtype = registry.DTYPES[dtype]
  if kind == 'depth':
    return registry.build_depth_net(cls, version, dtype=dtype), kind
  return registry.build_pose_net(cls, version, nb_ref_imgs=NUM_CONTEXT, dtype=dtype), kind


def network_inputs(kind, batch, shape, seed=0):
  """Random inputs in [0, 1]: (rgb,) for a depth net, (rgb, contexts) for a pose net."""
  h, w = shape
  rng = np.random.RandomState(seed)
  rgb = jnp.asarray(rng.uniform(size=(batch, h, w, 3)).astype(np.float32))
  if kind == 'depth':
    return (rgb,)
  return rgb, jnp.asarray(rng.uniform(size=(batch, NUM_CONTEXT, h, w, 3)).astype(np.float32))
