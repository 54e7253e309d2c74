"""torchvision ResNet state dicts (ImageNet weights) → Flax variables of our ResNet trunk.

The reference's 'pt' versions ('18pt', '34pt', '50pt') start the ResNet
encoder of DepthResNet / PoseResNet from torchvision's ImageNet file, e.g.
`resnet18-f37072fd.pth`: a bare state dict with keys `conv1.weight`, `bn1.*`,
`layer<L>.<B>.conv<K>.weight`, `layer<L>.<B>.bn<K>.*`,
`layer<L>.<B>.downsample.{0,1}.*` and `fc.*`. Those names are exactly the Flax
paths of `packnet_jax.models.resnet_encoder.ResNet` (the module both networks
hold at `encoder/encoder`), so `keymap` converts them like any other network.

Nothing here downloads: the user brings the file.
"""
import re

import numpy as np

from packnet_jax.convert import keymap

# torchvision's ImageNet files (IMAGENET1K_V1, what the reference's `pretrained=True` loads).
IMAGENET_FILES = {18: 'resnet18-f37072fd.pth', 34: 'resnet34-b627a593.pth', 50: 'resnet50-0676ba61.pth'}
DOWNLOAD_URL = 'https://download.pytorch.org/models/'
# Blocks per stage of the torchvision ResNets (101/152 are recognised only to name them in errors).
_BLOCKS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
_SUPPORTED = (18, 34, 50)
# `jax.eval_shape` input: parameter shapes do not depend on the image size.
_TEMPLATE_SHAPE = (1, 64, 64, 3)


def imagenet_file_hint(num_layers):
  """'resnet18-f37072fd.pth (https://download.pytorch.org/models/resnet18-f37072fd.pth)'."""
  name = IMAGENET_FILES[num_layers]
  return f'{name} ({DOWNLOAD_URL}{name})'


def is_resnet_state_dict(obj):
  """True for a bare torchvision-layout ResNet state dict (top-level `conv1.weight`, `layer1.0.*`)."""
  return (isinstance(obj, dict) and 'conv1.weight' in obj and 'layer1.0.conv1.weight' in obj
          and isinstance(obj['conv1.weight'], np.ndarray))


def _blocks_per_stage(state_dict):
  counts = []
  for stage in range(1, 5):
    pattern = re.compile(rf'^layer{stage}\.(\d+)\.')
    counts.append(1 + max((int(m.group(1)) for m in map(pattern.match, state_dict) if m), default=-1))
  return tuple(counts)


def resnet_depth(state_dict, path):
  """18 / 34 / 50 from the key set (Bottleneck blocks have a `conv3`).

  Raises:
    ValueError: a ResNet depth the encoder does not support (101, 152, ...).
  """
  blocks = _blocks_per_stage(state_dict)
  bottleneck = 'layer1.0.conv3.weight' in state_dict
  depth = _BLOCKS.get(blocks)
  if depth == 34 and bottleneck:
    depth = 50
  if depth not in _SUPPORTED:
    name = f'ResNet-{depth}' if depth else f'a ResNet with {blocks} blocks per stage'
    raise ValueError(f'{path}: holds {name} weights; expected torchvision ResNet-18, 34 or 50 '
                     f'({", ".join(IMAGENET_FILES.values())})')
  return depth


def template_variables(num_layers):
  """Shapes of the variables of `ResNet(num_layers)` on a 3-channel input (nothing computed)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from packnet_jax.models.resnet_encoder import ResNet  # pylint: disable=import-outside-toplevel
  return jax.eval_shape(ResNet(num_layers).init, jax.random.PRNGKey(0), jnp.zeros(_TEMPLATE_SHAPE))


def _owned_float32(value):
  # Copies out of the file's memory map (arrays here are read-only views of it).
  value = np.asarray(value)
  if np.issubdtype(value.dtype, np.floating) or value.dtype.name == 'bfloat16':
    return np.array(value, np.float32)
  return np.array(value)


def convert_state_dict(state_dict, path):
  """torchvision ResNet state dict → (num_layers, variables, unused_keys).

  Args:
    state_dict: {torch key: array}, as `torch_pickle.load` returns it.
    path: the file, for messages.

  Returns:
    num_layers (18/34/50); variables {'params', 'batch_stats'} of `ResNet`
    (numpy, float32; 3 input channels); unused_keys in file order.

  Raises:
    ValueError: one line naming `path`: not a supported depth, a required key
      missing, or a key of the wrong shape (e.g. a wide or ResNeXt variant).
  """
  num_layers = resnet_depth(state_dict, path)
  weights = {str(k): _owned_float32(v) for k, v in state_dict.items() if isinstance(v, np.ndarray)}
  try:
    variables, missing, unused = keymap.torch_state_dict_to_variables(weights, template_variables(num_layers))
  except ValueError as e:
    raise ValueError(f'{path}: not a torchvision ResNet-{num_layers} state dict ({e})') from None
  if missing:
    shown = ', '.join(missing[:8]) + (f', ... ({len(missing)} total)' if len(missing) > 8 else '')
    raise ValueError(f'{path}: torchvision ResNet-{num_layers}: missing required key(s) {shown}')
  return num_layers, variables, unused
