"""Builds depth and pose networks by their reference class names (config `model.depth_net.name`)."""
import jax
import jax.numpy as jnp

from packnet_jax.models.depth_resnet import DepthResNet
from packnet_jax.models.fast.remat import REMAT_MODES
from packnet_jax.models.packnet import PackNet01, PackNetSlim01
from packnet_jax.models.pose_net import PoseNet
from packnet_jax.models.pose_resnet import PoseResNet

# Converted-model kinds → the SfmModel submodule (and checkpoint node) holding that network.
NETWORKS = {'depth': 'depth_net', 'pose': 'pose_net'}
# Compute dtypes by config name (`compute_dtype`, `--dtype`); parameters stay float32.
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
# Training's `compute_dtype` also takes 'float64': everything float64, to measure float32's rounding
# noise (CPU, with jax_enable_x64 on before any array is made; see `utils.dtypes.param_dtype`).
FLOAT64 = 'float64'
COMPUTE_DTYPES = tuple(DTYPES) + (FLOAT64,)

DEPTH_NETS = {'PackNet01': PackNet01, 'PackNetSlim01': PackNetSlim01, 'DepthResNet': DepthResNet}
POSE_NETS = {'PoseNet': PoseNet, 'PoseResNet': PoseResNet}


def dtype(name):
  """The jnp dtype of a compute-dtype name ('float32' | 'bfloat16' | 'float16' | 'float64').

  'float64' needs the CPU backend and jax_enable_x64 (else JAX would silently compute in float32).
  """
  if name == FLOAT64:
    check_float64()
    return jnp.float64
  if name not in DTYPES:
    raise ValueError(f'dtype: expected one of {COMPUTE_DTYPES}, got {name!r}')
  return DTYPES[name]


def check_float64():
  """Raises a one-line ValueError unless float64 arrays are really float64 here (x64 on, CPU)."""
  if jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
    raise ValueError("compute_dtype 'float64': needs jax_enable_x64 on before any array is made "
                     "(packnet_jax.main turns it on; elsewhere call jax.config.update('jax_enable_x64', True))")
  if jax.default_backend() != 'cpu':
    raise ValueError(f"compute_dtype 'float64': CPU only (a measurement mode), this backend is "
                     f"{jax.default_backend()!r}; run with JAX_PLATFORMS=cpu")


def _lookup(table, name, kind):
  if name not in table:
    raise ValueError(f'{kind}: name: expected one of {sorted(table)}, got {name!r}')
  return table[name]


def build_depth_net(name, version=None, dropout=0.0, dtype=jnp.float32, remat='none'):
  """Returns an unbound depth-net module, e.g. build_depth_net('PackNet01', '1A').

  `version` defaults to the reference's usual one ('1A' for PackNets, '18' for
  DepthResNet); yacs-style ints (18) are accepted. `dropout` None means 0.
  `remat` is config `model.remat` ('none' | 'full' | 'save_conv').
  """
  cls = _lookup(DEPTH_NETS, name, 'depth net')
  if version is None:
    version = '18' if cls is DepthResNet else '1A'
  if remat not in REMAT_MODES:
    raise ValueError(f'model.remat: expected one of {REMAT_MODES}, got {remat!r}')
  return cls(version=str(version), dropout=float(dropout or 0.0), dtype=dtype, remat=remat)


def build_pose_net(name, version=None, nb_ref_imgs=2, dtype=jnp.float32):
  """Returns an unbound pose-net module: build_pose_net('PoseNet') or ('PoseResNet', '18').

  PoseNet ignores `version`; PoseResNet defaults to '18'.
  """
  cls = _lookup(POSE_NETS, name, 'pose net')
  if cls is PoseNet:
    return PoseNet(nb_ref_imgs=int(nb_ref_imgs), dtype=dtype)
  return PoseResNet(version=str(version if version is not None else '18'), dtype=dtype)
