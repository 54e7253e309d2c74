"""Config → SfmModel, loss options and initial variables (optionally released weights).

Weights can come from
  * `model.checkpoint_path`: a whole-model `.ckpt` (or converted directory)
    giving both networks;
  * `model.depth_net.checkpoint_path` / `model.pose_net.checkpoint_path`: one
    network each (these win over the whole-model file);
read through `packnet_jax.convert` (no torch). Shapes must match the
configured networks; a mismatch fails with the checkpoint path and key.
"""

import jax
import numpy as np
from absl import logging
from flax import traverse_util

from packnet_jax.losses import objective
from packnet_jax.models import registry
from packnet_jax.models import sfm_model
from packnet_jax.train import imagenet_init



def loss_options(config):
  """LossOptions from `config.model` (name + loss node)."""
  return objective.LossOptions.from_dict(config.model.name, config.model.loss.to_dict())


def num_contexts(config):
  train = config.datasets.train
  return int(train.back_context) + int(train.forward_context)


def build_model(config):
  """SfmModel with the configured depth and pose networks."""
  dtype = registry.dtype(config.compute_dtype)
  depth = config.model.depth_net
  if not depth.name:
    raise ValueError("config key 'model.depth_net.name': expected a depth network name, got ''")
  depth_net = registry.build_depth_net(depth.name, depth.version or None, depth.dropout, dtype=dtype,
                                       remat=config.model.remat)
  pose_net = None
  if loss_options(config).needs_pose_net:
    pose = config.model.pose_net
    if not pose.name:
      raise ValueError("config key 'model.pose_net.name': expected a pose network name, got ''")
    n = num_contexts(config)
    if n < 1:
      raise ValueError('config key \'datasets.train.back_context\': self-supervision needs at least '
                       'one context frame (back_context + forward_context >= 1)')
    pose_net = registry.build_pose_net(pose.name, pose.version or None, nb_ref_imgs=n, dtype=dtype)
  return sfm_model.SfmModel(depth_net=depth_net, pose_net=pose_net,
                            upsample_depth_maps=config.model.loss.upsample_depth_maps,
                            rotation_mode=config.model.loss.rotation_mode)


def init_variables(model, config, rng, image_shape, load_weights=True):
  """Random-initialised variables {'params', 'batch_stats'} (numpy), ImageNet encoders, then released weights.

  Every weight file is read and checked (into a template of zeros) before the initialisation
  compiles, so a bad file fails in seconds; the loaded leaves then replace the random ones.
  `load_weights=False` skips the files (a run resuming from its own checkpoint overwrites the
  weights anyway, and must not need the files again).
  """
  if load_weights:
    template = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                      variable_shapes(model, config, image_shape))
    # 'pt' versions: torchvision ImageNet weights in the ResNet encoders (a checkpoint below still wins).
    loaded = imagenet_init.apply_imagenet_encoders(jax.tree_util.tree_map(lambda x: x, template), config)
    loaded = load_pretrained(loaded, config)
  variables = _params_and_batch_stats(jax.device_get(sfm_model.init_variables(
      model, rng, image_shape, num_context=max(1, num_contexts(config)))))
  if not load_weights:
    return variables
  # The loaders put new arrays where they load; a leaf still the template's own zero array was not loaded.
  return jax.tree_util.tree_map(lambda zero, got, drawn: drawn if got is zero else got, template, loaded, variables)


def variable_shapes(model, config, image_shape):
  """`init_variables`'s tree as jax.ShapeDtypeStructs, from shapes alone (nothing compiles or runs)."""
  return _params_and_batch_stats(sfm_model.variable_shapes(model, image_shape,
                                                           num_context=max(1, num_contexts(config))))


def _params_and_batch_stats(variables):
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def _read_weights(path):
  """{'depth'|'pose': Flax variables} from a `.ckpt` file or a converted directory."""
  from packnet_jax.convert import converter  # pylint: disable=import-outside-toplevel
  model = converter.load_any(path)
  if model.config.get(converter.ENCODER):
    raise ValueError(f'{path}: ImageNet encoder weights only, not a network checkpoint; pass it as '
                     "model.depth_net.pretrained_encoder / model.pose_net.pretrained_encoder (version '18pt', ...)")
  for message in model.messages:
    logging.info('%s: %s', path, message)
  return model.variables


def _assign(variables, net, loaded, path):
  """Copies one network's loaded variables into `variables`, checking every shape."""
  for collection in ('params', 'batch_stats'):
    target = variables.get(collection, {}).get(net)
    if target is None:
      continue
    source = loaded.get(collection)
    if source is None:
      raise ValueError(f'{path}: {net} has no {collection} in the checkpoint')
    flat_t = traverse_util.flatten_dict(target)
    flat_s = traverse_util.flatten_dict(dict(source))
    for key, leaf in flat_t.items():
      if key not in flat_s:
        raise ValueError(f'{path}: {net}: missing {collection}/{"/".join(key)} for the configured network')
      value = np.asarray(flat_s[key])
      if value.shape != np.shape(leaf):
        raise ValueError(f'{path}: {net}: {collection}/{"/".join(key)} has shape {value.shape}, '
                         f'the configured network needs {np.shape(leaf)}')
      flat_t[key] = value.astype(np.asarray(leaf).dtype)
    variables[collection][net] = traverse_util.unflatten_dict(flat_t)


def load_pretrained(variables, config):
  """Overwrites network variables with the configured checkpoints (if any)."""
  sources = []
  if config.model.checkpoint_path:
    sources.append((config.model.checkpoint_path, ('depth', 'pose')))
  for kind, net in registry.NETWORKS.items():
    path = config.model[net].checkpoint_path
    if path:
      sources.append((path, (kind,)))
  for path, kinds in sources:
    weights = _read_weights(path)
    for kind in kinds:
      net = registry.NETWORKS[kind]
      if net not in variables['params']:
        continue
      if kind not in weights:
        if len(kinds) == 1:
          raise ValueError(f'{path}: no {net} weights in this checkpoint')
        logging.warning('%s: no %s weights; %s keeps its initialisation', path, net, net)
        continue
      _assign(variables, net, weights[kind], path)
      logging.info('%s: loaded %s', path, net)
  return variables
