"""Continue a reference training run from its `.ckpt`: Adam moments and epoch.

A PackNet-SfM `.ckpt` stores, next to the weights, `optimizer` (a torch
`Adam.state_dict()`) and `epoch`. The optimiser has two parameter groups named
'Depth' and 'Pose'; each lists integer parameter ids, which are the positions of
that network's *parameters* (buffers excluded) in its state-dict order. The
per-parameter state holds `step`, `exp_avg` (first moment) and `exp_avg_sq`
(second moment) in torch layout.

Here those moments go through the converter's key mapping into the Flax layout
and replace `mu`/`nu` of the matching optax Adam state; Adam's `count` becomes the
stored `step`, and the train step counter (and with it the data position and the
StepLR schedule) starts after the stored epoch: the reference saves epoch `e`
once epoch `e` has finished, so training continues with epoch `e + 1`.
"""
import numpy as np
import optax
from absl import logging

from packnet_jax.convert import checkpoint as ckpt_lib
from packnet_jax.convert import keymap
from packnet_jax.models.registry import NETWORKS as NETS

GROUP_NAMES = {'depth': 'Depth', 'pose': 'Pose'}   # ours → the reference's group names
_BUFFER_SUFFIXES = ('.running_mean', '.running_var', '.num_batches_tracked')


def _group(optimizer, kind):
  for group in optimizer.get('param_groups', ()):
    if group.get('name') == GROUP_NAMES[kind]:
      return group
  return None


def adam_moments(ckpt, kind, params_template):
  """(step, mu, nu) in the Flax layout of one network, or None when the file has none.

  Args:
    ckpt: a `convert.checkpoint.Checkpoint`.
    kind: 'depth' or 'pose'.
    params_template: that network's Flax `params` tree (shapes are read).
  """
  optimizer = ckpt.optimizer if isinstance(ckpt.optimizer, dict) else {}
  group, weights = _group(optimizer, kind), ckpt.networks.get(kind)
  per_param = optimizer.get('state') or {}
  if group is None or weights is None or not per_param:
    return None
  keys = [k for k in weights if not k.endswith(_BUFFER_SUFFIXES)]
  ids = list(group['params'])
  if len(ids) != len(keys):
    raise ValueError(f'{ckpt.path}: optimizer group {GROUP_NAMES[kind]!r} lists {len(ids)} '
                     f'parameters but the {NETS[kind]} has {len(keys)}')
  moments, steps = {'exp_avg': {}, 'exp_avg_sq': {}}, []
  for key, pid in zip(keys, ids):
    entry = per_param.get(pid)
    if entry is None:
      return None   # a parameter that never received a gradient: no complete Adam state
    steps.append(int(np.asarray(entry['step'])))
    for name in moments:
      moments[name][key] = np.asarray(entry[name], np.float32)
  out = []
  for name in ('exp_avg', 'exp_avg_sq'):
    variables, missing, _ = keymap.torch_state_dict_to_variables(
        moments[name], {'params': params_template})
    if missing:
      raise ValueError(f'{ckpt.path}: optimizer {name} lacks {missing[0]}')
    out.append(variables['params'])
  return max(steps), out[0], out[1]


def _replace_adam(node, net, count, mu, nu):
  """Returns `node` (an optax state) with one network's Adam moments replaced."""
  if isinstance(node, optax.ScaleByAdamState):
    return node._replace(count=np.asarray(count, np.asarray(node.count).dtype),
                         mu={**node.mu, net: mu}, nu={**node.nu, net: nu})
  if isinstance(node, optax.MaskedState):
    return node._replace(inner_state=_replace_adam(node.inner_state, net, count, mu, nu))
  if isinstance(node, tuple) and not hasattr(node, '_fields'):
    return tuple(_replace_adam(n, net, count, mu, nu) for n in node)
  return node


def _set_schedule_count(node, count):
  """Sets every optax schedule counter (StepLR position) to `count`."""
  if isinstance(node, optax.ScaleByScheduleState):
    return node._replace(count=np.asarray(count, np.asarray(node.count).dtype))
  if isinstance(node, optax.MaskedState):
    return node._replace(inner_state=_set_schedule_count(node.inner_state, count))
  if isinstance(node, optax.transforms.PartitionState):
    return node._replace(inner_states={k: _set_schedule_count(v, count)
                                       for k, v in node.inner_states.items()})
  if isinstance(node, tuple) and not hasattr(node, '_fields'):
    return tuple(_set_schedule_count(n, count) for n in node)
  return node


def _with_group_moments(opt_state, kind, count, mu, nu):
  def visit(node):
    if isinstance(node, optax.transforms.PartitionState):
      inner = dict(node.inner_states)
      inner[kind] = _replace_adam(inner[kind], NETS[kind], count, mu, nu)
      return node._replace(inner_states=inner)
    if isinstance(node, tuple) and not hasattr(node, '_fields'):
      return tuple(visit(n) for n in node)
    return node
  return visit(opt_state)


def continue_training(state, path, steps_per_epoch):
  """TrainState with the `.ckpt`'s Adam moments and the step after its stored epoch.

  Networks whose moments are absent keep a fresh optimiser state (logged).
  """
  ckpt = ckpt_lib.read_checkpoint(path)
  opt_state = state.opt_state
  for kind, net in NETS.items():
    if net not in state.params:
      continue
    found = adam_moments(ckpt, kind, state.params[net])
    if found is None:
      logging.warning('%s: no Adam state for %s; its optimiser starts fresh', path, net)
      continue
    opt_state = _with_group_moments(opt_state, kind, *found)
  step = 0 if ckpt.epoch is None else (ckpt.epoch + 1) * steps_per_epoch
  opt_state = _set_schedule_count(opt_state, step)
  logging.info('%s: continuing after epoch %s (train step %d)', path, ckpt.epoch, step)
  return state.replace(opt_state=opt_state, step=np.asarray(step, np.asarray(state.step).dtype))
