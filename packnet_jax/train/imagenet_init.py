"""ImageNet initialisation of the ResNet encoders of 'pt' versions ('18pt', '34pt', '50pt').

In the reference a 'pt' DepthResNet / PoseResNet builds its ResNet encoder
with torchvision's ImageNet weights (every key, `fc` and the BatchNorm
statistics included). Here nothing is downloaded: `model.<net>.pretrained_encoder`
names torchvision's file (`resnet18-f37072fd.pth`, ...) or the directory
`python -m packnet_jax.convert` made from it, and the weights are copied into
the freshly initialised variables at `params/<net>/encoder/encoder` (the
networks themselves are built the same with or without 'pt').

PoseResNet's first convolution sees N stacked images (3·N channels); like the
reference, its kernel is the 3-channel ImageNet kernel repeated N times along
the input channels and divided by N, so N copies of one image give the
ImageNet response.

A 'pt' version with no file stops with one line naming the file to bring,
unless a checkpoint (`model.checkpoint_path` or `model.<net>.checkpoint_path`)
supplies that network: random weights never stand in for ImageNet ones.
"""
import numpy as np
from absl import logging
from flax import traverse_util

from packnet_jax.convert import torchvision_resnet
from packnet_jax.models import registry

RESNET_NETS = ('DepthResNet', 'PoseResNet')
# Where the ResNet trunk sits inside DepthResNet / PoseResNet variables.
ENCODER_PATH = ('encoder', 'encoder')
_FIRST_CONV = ('conv1', 'kernel')


def wants_imagenet(name, version):
  """True for DepthResNet / PoseResNet with a 'pt' version."""
  return name in RESNET_NETS and str(version).endswith('pt')


def _num_layers(version):
  return int(str(version)[:2])


def tile_first_conv(kernel, in_channels):
  """3-channel HWIO conv kernel → `in_channels` (= 3·N) inputs: repeated N times, divided by N."""
  kernel = np.asarray(kernel)
  if kernel.shape[2] != 3 or in_channels % 3:
    raise ValueError(f'first conv: expected a 3-channel kernel and a multiple of 3 inputs, got kernel '
                     f'{kernel.shape} for {in_channels} inputs')
  n = in_channels // 3
  return np.concatenate([kernel] * n, axis=2) / np.float32(n)


def load_encoder(path):
  """(num_layers, {'params', 'batch_stats'} of the 3-channel ResNet) from a .pth or a converted directory.

  Raises:
    ValueError: unreadable file, or not ImageNet encoder weights.
  """
  from packnet_jax.convert import converter  # pylint: disable=import-outside-toplevel
  model = converter.load_any(path)
  encoder = model.config.get(converter.ENCODER)
  if not encoder or converter.ENCODER not in model.variables:
    raise ValueError(f'{path}: not ImageNet encoder weights (expected torchvision\'s resnetNN-*.pth or a '
                     'directory converted from it; a PackNet-SfM checkpoint goes to '
                     'model.checkpoint_path or model.<net>.checkpoint_path)')
  for message in model.messages:
    logging.info('%s: %s', path, message)
  return int(encoder['num_layers']), model.variables[converter.ENCODER]


def _missing_file_message(net, node):
  num_layers = _num_layers(node.version)
  return (f"config key 'model.{net}.pretrained_encoder': {node.name} version '{node.version}' needs "
          f"torchvision's ImageNet weights {torchvision_resnet.imagenet_file_hint(num_layers)}; download it "
          f'and pass --config.model.{net}.pretrained_encoder=PATH (or set model.{net}.checkpoint_path)')


def _copy_encoder(target, source, path, net):
  """`source` ResNet variables (3 channels) → `target` (same tree; first conv may have 3·N inputs)."""
  out = {}
  for collection, tree in target.items():
    flat_t = traverse_util.flatten_dict(dict(tree))
    flat_s = traverse_util.flatten_dict(dict(source.get(collection) or {}))
    for key, leaf in flat_t.items():
      name = '/'.join((collection,) + key)
      if key not in flat_s:
        raise ValueError(f'{path}: {net} encoder needs {name}, which the ImageNet weights lack')
      value = np.asarray(flat_s[key], np.float32)
      if key == _FIRST_CONV and value.shape != np.shape(leaf):
        value = tile_first_conv(value, np.shape(leaf)[2])
      if value.shape != np.shape(leaf):
        raise ValueError(f'{path}: {net} encoder {name} has shape {value.shape}, the network needs '
                         f'{np.shape(leaf)}')
      flat_t[key] = value.astype(np.asarray(leaf).dtype)
    out[collection] = traverse_util.unflatten_dict(flat_t)
  return out


def _encoder_variables(variables, net):
  found = {}
  for collection in ('params', 'batch_stats'):
    tree = variables.get(collection, {}).get(net)
    for part in ENCODER_PATH:
      tree = tree.get(part) if tree is not None else None
    if tree is None:
      raise ValueError(f'model.{net}: no ResNet encoder at {collection}/{net}/{"/".join(ENCODER_PATH)}')
    found[collection] = tree
  return found


def _store_encoder(variables, net, encoder):
  for collection, tree in encoder.items():
    parent = variables[collection][net]
    for part in ENCODER_PATH[:-1]:
      parent = parent[part]
    parent[ENCODER_PATH[-1]] = tree


def apply_imagenet_encoders(variables, config):
  """Copies ImageNet weights into the encoders of the configured 'pt' networks.

  Args:
    variables: {'params', 'batch_stats'} of the SfmModel (numpy, modified in place).
    config: experiment config (`model.depth_net` / `model.pose_net` nodes).

  Returns:
    `variables`.

  Raises:
    ValueError: one line: a 'pt' version without a file (and no checkpoint for
      that net), a file of another ResNet depth, a file that is not ImageNet
      encoder weights, or `pretrained_encoder` set for a net that is not 'pt'.
  """
  cache = {}
  for net in registry.NETWORKS.values():
    node = config.model[net]
    path = node.pretrained_encoder
    if net not in variables['params']:
      if path:
        logging.warning('model.%s.pretrained_encoder: ignored, the model has no %s', net, net)
      continue
    if not wants_imagenet(node.name, node.version):
      if path:
        raise ValueError(f"config key 'model.{net}.pretrained_encoder': set to {path}, but {node.name or net} "
                         f"version '{node.version}' takes no ImageNet encoder (use a 'pt' version of DepthResNet "
                         'or PoseResNet, e.g. \'18pt\')')
      continue
    if not path:
      if config.model.checkpoint_path or node.checkpoint_path:
        logging.info('model.%s: version %r without ImageNet weights; its checkpoint supplies the encoder',
                     net, node.version)
        continue
      raise ValueError(_missing_file_message(net, node))
    if path not in cache:
      cache[path] = load_encoder(path)
    num_layers, encoder = cache[path]
    needed = _num_layers(node.version)
    if num_layers != needed:
      raise ValueError(f"{path}: holds ResNet-{num_layers} ImageNet weights, but model.{net} version "
                       f"'{node.version}' needs ResNet-{needed} ({torchvision_resnet.IMAGENET_FILES[needed]})")
    _store_encoder(variables, net, _copy_encoder(_encoder_variables(variables, net), encoder, path, net))
    logging.info('%s: ImageNet ResNet-%d weights loaded into the %s encoder', path, num_layers, net)
  return variables
