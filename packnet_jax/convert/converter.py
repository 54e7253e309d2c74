"""Checkpoint → Flax variables, and the converted directory on disk.

A converted directory holds `variables/` (an orbax checkpoint of
{'depth': variables, 'pose': variables}, only the nets the checkpoint has
weights for) and `model_config.json` (network names/versions, training image
shape, depth range, the full stored config). Torch keys go through
`packnet_jax.convert.keymap`, the one mapping the parity tests use too.

A torchvision ResNet file (ImageNet weights, e.g. `resnet18-f37072fd.pth`)
converts to an encoder-only directory: variables {'encoder': ResNet variables}
and a config whose 'encoder' entry names the depth ({'name': 'ResNet',
'num_layers': 18, ...}) and whose depth_net / pose_net are None. Training
applies it to 'pt' versions (`packnet_jax.train.imagenet_init`).
"""
import dataclasses
import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from packnet_jax.convert import checkpoint as checkpoint_lib
from packnet_jax.convert import keymap
from packnet_jax.convert import torch_pickle
from packnet_jax.convert import torchvision_resnet
from packnet_jax.models import registry
from packnet_jax.utils import io as io_utils

CONFIG_FILE = 'model_config.json'
VARIABLES_DIR = 'variables'
FORMAT = 'packnet_jax.converted/1'
# Key of the ResNet trunk in an encoder-only (ImageNet) converted model.
ENCODER = 'encoder'
# Any multiple of 32 works: parameter shapes do not depend on the image size.
_TEMPLATE_HW = (64, 64)


@dataclasses.dataclass
class ConvertedModel:
  """Attributes:
    config: the model_config.json dict.
    variables: {'depth'|'pose': Flax variables} for the nets with weights.
    unused_keys: {'depth'|'pose'|'other': [torch keys nothing consumed]}.
    messages: human-readable notes (e.g. 'depth_net: no weights in checkpoint').
  """
  config: dict
  variables: dict
  unused_keys: dict
  messages: list


def build_network(kind, spec, dtype=jnp.float32):
  """Unbound Flax module for a 'depth'/'pose' spec {'name', 'version', ...}."""
  if kind == 'depth':
    return registry.build_depth_net(spec['name'], spec.get('version') or None, spec.get('dropout', 0.0),
                                    dtype=dtype)
  return registry.build_pose_net(spec['name'], spec.get('version') or None,
                                 nb_ref_imgs=spec.get('nb_ref_imgs', 2), dtype=dtype)


def template_variables(kind, net, spec):
  """Shapes/dtypes of the net's variables (jax.eval_shape: nothing is computed)."""
  h, w = _TEMPLATE_HW
  rng = jax.random.PRNGKey(0)
  if kind == 'depth':
    return jax.eval_shape(net.init, rng, jnp.zeros((1, h, w, 3)))
  contexts = jnp.zeros((1, spec.get('nb_ref_imgs', 2), h, w, 3))
  return jax.eval_shape(net.init, rng, jnp.zeros((1, h, w, 3)), contexts)


def _with_contexts(spec, weights):
  """PoseNet's number of context frames is fixed by its head: 6·N outputs."""
  if spec['name'] == 'PoseNet' and 'pose_pred.weight' in weights:
    return dict(spec, nb_ref_imgs=int(np.shape(weights['pose_pred.weight'])[0]) // 6)
  return spec


def _list(keys, limit=8):
  shown = ', '.join(keys[:limit])
  return shown + (f', ... ({len(keys)} total)' if len(keys) > limit else '')


def convert_checkpoint(path):
  """Reads a checkpoint file and maps its weights to Flax variables.

  A PackNet-SfM `.ckpt` (or state dict) gives the depth and/or pose net; a
  torchvision ResNet state dict gives an encoder-only model (`ENCODER`).

  Raises:
    ValueError: unreadable checkpoint, unknown architecture, a required key
      missing or of the wrong shape, or no network weights at all.
  """
  path = os.fspath(path)
  loaded = torch_pickle.load(path)
  if torchvision_resnet.is_resnet_state_dict(loaded):
    return convert_imagenet_encoder(path, loaded)
  ckpt = checkpoint_lib.read_checkpoint(path, loaded=loaded)
  variables, unused, messages, specs = {}, {}, [], {}
  for kind, node in registry.NETWORKS.items():
    spec, weights = ckpt.specs.get(kind), ckpt.networks.get(kind)
    if spec is None:
      messages.append(f'{node}: not in checkpoint')
      continue
    if not weights:
      specs[kind] = dict(spec, weights=False)
      messages.append(f'{node}: no weights in checkpoint ({spec["name"]} {spec["version"]!r} named by the '
                      'config); not converted')
      continue
    spec = _with_contexts(spec, weights)
    net = build_network(kind, spec)
    net_vars, missing, net_unused = keymap.torch_state_dict_to_variables(
        weights, template_variables(kind, net, spec))
    if missing:
      raise ValueError(f'{path}: {node} ({spec["name"]} {spec["version"]!r}): missing required key(s) '
                       f'{_list(missing)}')
    variables[kind] = net_vars
    unused[kind] = net_unused
    specs[kind] = dict(spec, weights=True)
    messages.append(f'{node}: converted {spec["name"]} {spec["version"]!r}'
                    + (f'; unused keys: {_list(net_unused)}' if net_unused else ''))
  if not variables:
    raise ValueError(f'{path}: no network weights in checkpoint (no depth_net or pose_net entries)')
  unused['other'] = list(ckpt.unused_keys)
  if ckpt.unused_keys:
    messages.append(f'unused keys outside the networks: {_list(ckpt.unused_keys)}')
  return ConvertedModel(config=model_config(ckpt, specs), variables=variables, unused_keys=unused,
                        messages=messages)


def convert_imagenet_encoder(path, state_dict):
  """An encoder-only ConvertedModel from a torchvision ResNet state dict (see module doc)."""
  num_layers, variables, unused = torchvision_resnet.convert_state_dict(state_dict, path)
  num_arrays = sum(len(traverse_util.flatten_dict(dict(tree))) for tree in variables.values())
  messages = [f'encoder: converted torchvision ResNet-{num_layers} ({num_arrays} arrays) for DepthResNet / '
              f'PoseResNet version \'{num_layers}pt\'',
              'depth_net, pose_net: not in file (ImageNet encoder weights only)']
  if unused:
    messages.append(f'unused keys: {_list(unused)}')
  config = {'format': FORMAT, 'source': os.path.basename(path), 'epoch': None, 'model_name': None,
            'depth_net': None, 'pose_net': None, 'image_shape': None,
            ENCODER: {'name': 'ResNet', 'num_layers': num_layers, 'weights': 'torchvision ImageNet'}}
  return ConvertedModel(config=config, variables={ENCODER: variables}, unused_keys={ENCODER: unused},
                        messages=messages)


def model_config(ckpt, specs):
  """The model_config.json dict of a parsed checkpoint."""
  cfg = ckpt.config or {}
  model = cfg.get('model') or {}
  params, loss = model.get('params') or {}, model.get('loss') or {}
  image_shape = ((cfg.get('datasets') or {}).get('augmentation') or {}).get('image_shape') or None
  return {
      'format': FORMAT,
      'source': os.path.basename(ckpt.path),
      'epoch': ckpt.epoch,
      'model_name': model.get('name') or None,
      'depth_net': specs.get('depth'),
      'pose_net': specs.get('pose'),
      'image_shape': [int(s) for s in image_shape] if image_shape else None,
      'min_depth': float(params.get('min_depth', 0.0)),
      'max_depth': float(params.get('max_depth', 80.0)),
      'crop': params.get('crop', ''),
      'scale_output': params.get('scale_output', 'resize'),
      'rotation_mode': loss.get('rotation_mode', 'euler'),
      'checkpoint_config': ckpt.config,
  }


def save_converted(model, output_dir, overwrite=False):
  """Writes `model` to `output_dir` atomically (temp dir + rename).

  Raises:
    ValueError: output exists (non-empty) and not `overwrite`, or the parent
      folder is not writable.
  """
  output_dir = os.path.abspath(os.fspath(output_dir))
  if os.path.exists(output_dir) and not (os.path.isdir(output_dir) and not os.listdir(output_dir)) \
      and not overwrite:
    raise ValueError(f'{output_dir}: output already exists (pass --overwrite to replace it)')
  parent = io_utils.ensure_writable_dir(os.path.dirname(output_dir), 'output')
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(output_dir)}.tmp-', dir=parent)
  try:
    io_utils.default_permissions(tmp)
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(tmp, VARIABLES_DIR), model.variables)
    checkpointer.wait_until_finished()
    io_utils.atomic_write_text(os.path.join(tmp, CONFIG_FILE), json.dumps(model.config, indent=1))
    io_utils.replace_dir(tmp, output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return output_dir


def load_converted(directory):
  """Reads a directory written by `save_converted`.

  Raises:
    ValueError: not a converted directory or a damaged one.
  """
  directory = os.fspath(directory)
  config_path = os.path.join(directory, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise ValueError(f'{directory}: not a converted model directory (no {CONFIG_FILE}; '
                     'convert with `python -m packnet_jax.convert`)')
  try:
    with open(config_path) as f:
      config = json.load(f)
  except ValueError as e:
    raise ValueError(f'{config_path}: damaged JSON ({e})') from None
  if config.get('format') != FORMAT:
    raise ValueError(f'{config_path}: format: expected {FORMAT!r}, got {config.get("format")!r}')
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  try:
    variables = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(directory, VARIABLES_DIR)))
  except Exception as e:  # orbax raises many types for a missing/damaged tree.
    raise ValueError(f'{directory}: cannot read {VARIABLES_DIR}/ ({type(e).__name__}: {e})') from None
  return ConvertedModel(config=config, variables=dict(variables), unused_keys={}, messages=[])


def load_any(path):
  """A `ConvertedModel` from a `.ckpt` file (converted on the fly) or a converted directory."""
  path = os.fspath(path)
  if os.path.isdir(path):
    return load_converted(path)
  if os.path.isfile(path):
    return convert_checkpoint(path)
  raise ValueError(f'{path}: not found (expected a .ckpt file or a converted model directory)')
