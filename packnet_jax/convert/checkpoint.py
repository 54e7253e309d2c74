"""A PackNet-SfM checkpoint as per-network torch state dicts plus its config.

Accepts what the reference's loaders accept (docs/reference.md §8): a `.ckpt` dict
(`state_dict`, `config` CfgNode, `epoch`, `optimizer`, ...), an old `.pth.tar`
(keys renamed as `backwards_state_dict` does) or a plain state dict. Keys are
split between the networks the way `load_network` does: the text after the
first occurrence of `depth_net.` / `disp_network.` (depth) or `pose_net.` /
`pose_network.` (pose). The architecture comes from the stored config, else
from the key set.
"""
import dataclasses
import os
import re
from typing import Any, Optional

import numpy as np

from packnet_jax.convert import torch_pickle

DEPTH_PREFIXES = ('depth_net', 'disp_network')
POSE_PREFIXES = ('pose_net', 'pose_network')
_NETS = {'depth': ('depth_net', DEPTH_PREFIXES), 'pose': ('pose_net', POSE_PREFIXES)}


@dataclasses.dataclass
class Checkpoint:
  """A parsed checkpoint.

  Attributes:
    path: the file read.
    state_dict: all entries as stored (after the `.pth.tar` renames).
    config: the stored config as plain nested dicts/lists, or None.
    epoch: stored epoch, or None.
    optimizer: stored optimizer state (arrays may be views of the file).
    networks: {'depth'|'pose': network-level state dict} for nets with weights.
    specs: {'depth'|'pose': {'name', 'version', 'dropout'}} for nets named by
      the config or detected from the keys (a net may have a spec but no weights).
    unused_keys: state-dict keys that belong to no network.
  """
  path: str
  state_dict: dict
  config: Optional[dict]
  epoch: Optional[int]
  optimizer: Any
  networks: dict
  specs: dict
  unused_keys: list


def to_plain(obj):
  """CfgNode/OrderedDict/tuple trees → plain dicts and lists (JSON-friendly)."""
  if isinstance(obj, dict):
    return {str(k): to_plain(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_plain(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  return obj


def backwards_state_dict(state_dict):
  """Renames keys of old `.pth.tar` files (reference `backwards_state_dict`)."""
  renamed = {}
  for key, value in state_dict.items():
    key = 'model.' + key
    if 'disp_network' in key:
      key = key.replace('conv3.0.weight', 'conv3.weight').replace('conv3.0.bias', 'conv3.bias')
    for old, new in (('model.model', 'model'), ('pose_network', 'pose_net'), ('disp_network', 'depth_net')):
      key = key.replace(old + '.', new + '.')
    renamed[key] = value
  return renamed


def strip_prefixes(state_dict, prefixes):
  """Network-level entries: the key after the first `<prefix>.` it contains."""
  out = {}
  for key, value in state_dict.items():
    matched = False
    for prefix in prefixes:
      prefix += '.'
      if prefix in key:
        key = key[key.find(prefix) + len(prefix):]
        matched = True
    if matched:
      out[key] = value
  return out


def _layer_blocks(state_dict, layer):
  pattern = re.compile(rf'^encoder\.encoder\.{layer}\.(\d+)\.')
  return 1 + max((int(m.group(1)) for m in map(pattern.match, state_dict) if m), default=-1)


def _resnet_version(state_dict):
  if 'encoder.encoder.layer1.0.conv3.weight' in state_dict:
    return '50'
  return '34' if _layer_blocks(state_dict, 'layer3') == 6 else '18'


def detect_from_keys(state_dict):
  """(kind, {'name', 'version'}) of a network-level state dict, or None."""
  keys = state_dict.keys()
  if 'pose_pred.weight' in keys and 'conv1.0.weight' in keys:
    return 'pose', {'name': 'PoseNet', 'version': ''}
  if 'decoder.net.0.weight' in keys and 'encoder.encoder.conv1.weight' in keys:
    return 'pose', {'name': 'PoseResNet', 'version': _resnet_version(state_dict)}
  if 'decoder.decoder.0.conv.conv.weight' in keys and 'encoder.encoder.conv1.weight' in keys:
    return 'depth', {'name': 'DepthResNet', 'version': _resnet_version(state_dict)}
  if 'pre_calc.conv_base.weight' in keys and 'iconv5.conv_base.weight' in keys:
    slim = np.shape(state_dict['pre_calc.conv_base.weight'])[0] == 32
    # Version B adds the unpacked features to the skip: iconv5 sees 256 channels.
    added = np.shape(state_dict['iconv5.conv_base.weight'])[1] == 256
    return 'depth', {'name': 'PackNetSlim01' if slim else 'PackNet01', 'version': '1B' if added else '1A'}
  return None


def _version_core(version):
  """'18pt' → '18' (the ImageNet-init suffix does not change the weights' shapes)."""
  return str(version).replace('pt', '')


def _spec_from_config(config, node):
  net = ((config or {}).get('model') or {}).get(node) or {}
  if not net.get('name'):
    return None
  return {'name': str(net['name']), 'version': str(net.get('version', '')),
          'dropout': float(net.get('dropout', 0.0) or 0.0)}


def _known_names(kind):
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  return sorted(registry.DEPTH_NETS if kind == 'depth' else registry.POSE_NETS)


def _resolve_spec(path, kind, node, config, weights):
  spec = _spec_from_config(config, node)
  if spec is not None and spec['name'] not in _known_names(kind):
    raise ValueError(f'{path}: unknown architecture {spec["name"]!r} (model.{node}.name); '
                     f'expected one of {_known_names(kind)}')
  detected = detect_from_keys(weights) if weights else None
  if detected is not None and detected[0] != kind:
    raise ValueError(f'{path}: {node} weights look like a {detected[0]} network ({detected[1]["name"]})')
  if spec is None:
    if weights and detected is None:
      raise ValueError(f'{path}: {node}: unknown architecture (no config entry and the keys match no '
                       f'known network; first key {next(iter(weights))!r})')
    return None if detected is None else dict(detected[1], dropout=0.0)
  if detected is not None and (detected[1]['name'], _version_core(detected[1]['version'])) != (
      spec['name'], _version_core(spec['version'])):
    raise ValueError(f'{path}: model.{node} says {spec["name"]} {spec["version"]!r} but its weights look like '
                     f'{detected[1]["name"]} {detected[1]["version"]!r}')
  return spec


def _float32(value):
  value = np.asarray(value)
  if np.issubdtype(value.dtype, np.floating) or value.dtype.name == 'bfloat16':
    return value.astype(np.float32)  # Also copies out of the file's memory map.
  return np.array(value)


def read_checkpoint(path, loaded=None):
  """Reads a `.ckpt` / `.pth.tar` / plain state-dict file (no torch needed).

  Args:
    path: the file.
    loaded: what `torch_pickle.load(path)` returned, if the caller already
      read it (the file is then not read again).

  Raises:
    ValueError: unreadable file (see `torch_pickle.load`), no state dict, or an
      architecture that cannot be determined.
  """
  path = os.fspath(path)
  obj = torch_pickle.load(path) if loaded is None else loaded
  if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
    state_dict, config = obj['state_dict'], obj.get('config')
    epoch, optimizer = obj.get('epoch'), obj.get('optimizer')
  elif isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
    state_dict, config, epoch, optimizer = obj, None, None, None
  else:
    raise ValueError(f'{path}: no state_dict in checkpoint (expected a PackNet-SfM .ckpt or a state dict)')
  state_dict = {str(k): _float32(v) for k, v in state_dict.items() if isinstance(v, np.ndarray)}
  if path.endswith('.pth.tar') or any('disp_network.' in k or 'pose_network.' in k for k in state_dict):
    state_dict = backwards_state_dict(state_dict)
  config = to_plain(config) if isinstance(config, dict) else None

  networks, used = {}, set()
  for kind, (_, prefixes) in _NETS.items():
    weights = strip_prefixes(state_dict, prefixes)
    if weights:
      networks[kind] = weights
      used.update(k for k in state_dict if any(p + '.' in k for p in prefixes))
  if not networks:  # A bare network-level state dict.
    detected = detect_from_keys(state_dict)
    if detected is None:
      raise ValueError(f'{path}: unknown architecture: expected a PackNet-SfM checkpoint (depth_net/pose_net '
                       'keys or a known network\'s keys) or a torchvision ResNet state dict (conv1.weight, '
                       f'layer1.0.conv1.weight, ...); first key {next(iter(state_dict), None)!r}')
    networks[detected[0]] = dict(state_dict)
    used.update(state_dict)
  specs = {}
  for kind, (node, _) in _NETS.items():
    spec = _resolve_spec(path, kind, node, config, networks.get(kind))
    if spec is not None:
      specs[kind] = spec
  return Checkpoint(path=path, state_dict=state_dict, config=config,
                    epoch=int(epoch) if isinstance(epoch, int) else None, optimizer=optimizer,
                    networks=networks, specs=specs, unused_keys=[k for k in state_dict if k not in used])
