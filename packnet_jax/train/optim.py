"""Adam with one learning rate per network and the StepLR schedule (docs/reference.md §7).

The reference optimises two parameter groups, 'Depth' and 'Pose', each with its
own learning rate and (L2, not decoupled) weight decay, and steps a StepLR
scheduler once per *epoch*: lr = lr0 · gamma ** (epoch // step_size). Here the
schedule is a function of the optimiser step, converted with steps_per_epoch,
and the two groups are the top-level 'depth_net' / 'pose_net' parameter
subtrees, routed with optax.multi_transform. Optional global-norm gradient
clipping (0 = off, as the reference) is applied to all parameters together.
"""
import jax
import optax

GROUPS = {'depth_net': 'depth', 'pose_net': 'pose'}


def step_lr_schedule(lr, step_size_epochs, gamma, steps_per_epoch):
  """StepLR as an optax schedule over optimiser steps."""
  if steps_per_epoch < 1:
    raise ValueError(f'steps_per_epoch: expected >= 1, got {steps_per_epoch}')
  return optax.exponential_decay(
      init_value=lr, transition_steps=max(1, step_size_epochs) * steps_per_epoch,
      decay_rate=gamma, staircase=True)


def _adam(schedule, weight_decay):
  # torch.optim.Adam adds weight_decay·param to the gradient before the moments.
  parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  parts += [optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
            optax.scale_by_learning_rate(schedule)]
  return optax.chain(*parts)


def param_labels(params):
  """'depth' / 'pose' label for every leaf, from its top-level subtree name."""
  def label(name):
    if name not in GROUPS:
      raise ValueError(f'params: unexpected top-level entry {name!r}, expected {tuple(GROUPS)}')
    return GROUPS[name]
  return {name: jax.tree_util.tree_map(lambda _, n=name: label(n), sub)
          for name, sub in params.items()}


def create_optimizer(*, depth_lr, pose_lr, depth_weight_decay=0.0, pose_weight_decay=0.0,
                     step_size_epochs=10, gamma=0.5, steps_per_epoch=1, grad_clip_norm=0.0):
  """Returns (optax transformation, {'depth': schedule, 'pose': schedule})."""
  schedules = {
      'depth': step_lr_schedule(depth_lr, step_size_epochs, gamma, steps_per_epoch),
      'pose': step_lr_schedule(pose_lr, step_size_epochs, gamma, steps_per_epoch),
  }
  tx = optax.multi_transform(
      {'depth': _adam(schedules['depth'], depth_weight_decay),
       'pose': _adam(schedules['pose'], pose_weight_decay)},
      param_labels)
  if grad_clip_norm and grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
  return tx, schedules


def optimizer_from_config(optim, steps_per_epoch):
  """create_optimizer() from the `optim` config node."""
  return create_optimizer(
      depth_lr=optim.depth.lr, pose_lr=optim.pose.lr,
      depth_weight_decay=optim.depth.weight_decay, pose_weight_decay=optim.pose.weight_decay,
      step_size_epochs=optim.scheduler.step_size, gamma=optim.scheduler.gamma,
      steps_per_epoch=steps_per_epoch, grad_clip_norm=optim.grad_clip_norm)
