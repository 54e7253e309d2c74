"""`model.remat`: a network block under jax.checkpoint that also recomputes late on XLA:CPU.

Why: remat trades compute for train-step memory, but plain jax.checkpoint saves nothing on CPU
(see `remat`); the custom VJP here makes it hold on every backend (docs/performance.md).
"""
from flax.core import lift as flax_lift
import flax.linen as nn
import jax

from packnet_jax.utils import ordering

# Name given to every convolution output (the arrays the 'save_conv' remat policy keeps).
CONV_OUTPUT = 'conv_output'
REMAT_MODES = ('none', 'full', 'save_conv')


def remat(module_cls, mode, static_argnums=()):
  """`module_cls` under jax.checkpoint for config `model.remat` ('none' | 'full' | 'save_conv').

  'full' keeps nothing inside the block (all of it is recomputed in the backward
  pass); 'save_conv' keeps the convolution outputs (CONV_OUTPUT) and recomputes
  the cheap normalisations and activations. `static_argnums` counts `self` as 0
  (e.g. (2,) for a `train` flag passed as the second argument).

  jax.checkpoint keeps the recomputation apart from the forward pass with
  optimisation barriers. XLA:GPU honours them until it has scheduled the program;
  XLA:CPU removes them before it fuses anything, and its CSE merged the
  recomputation back into the forward pass. So the checkpointed block also gets
  a custom VJP (`_recompute_after_cotangent`) whose backward pass makes the
  saved activations depend on the output cotangent
  (adding a -0.0 derived from it): the recomputation then differs from the
  forward computation and cannot start before the cotangent exists, on every
  backend. (A lax.cond around the block does the same, but XLA:CPU leaves the
  convolutions inside conditionals to its slow generic emitter: 18x slower.)
  """
  if mode not in REMAT_MODES:
    raise ValueError(f'model.remat: expected one of {REMAT_MODES}, got {mode!r}')
  if mode == 'none':
    return module_cls
  policy = None if mode == 'full' else jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT)
  checkpointed = nn.remat(module_cls, policy=policy, static_argnums=static_argnums)
  # lift_transform passes the arguments after `self`: shift the indices by one.
  return nn.transforms.lift_transform(_recompute_after_cotangent, checkpointed,
                                      static_argnums=tuple(i - 1 for i in static_argnums))


def _recompute_after_cotangent(fn, *, static_argnums):
  """Flax core transform: `fn` with a VJP whose saved activations are tied to the output cotangent."""
  tied = []  # per residual leaf: tie it (an activation) or not (a variable); set by the forward pass

  def forward(scope, *args):
    dynamic = [i for i in range(len(args)) if i not in static_argnums]

    def call(scope, *dynamic_args):
      full = list(args)
      for i, value in zip(dynamic, dynamic_args):
        full[i] = value
      return fn(scope, *full)
    scopes = scope if isinstance(scope, (list, tuple)) else [scope]  # custom_vjp hands a list
    variables = {id(x) for s in scopes for x in jax.tree_util.tree_leaves(s.variables())}
    y, vjp_fn = flax_lift.vjp(call, scope, *[args[i] for i in dynamic])
    tied[:] = [id(x) not in variables for x in jax.tree_util.tree_leaves(vjp_fn)]
    return y, vjp_fn

  def backward(*args):
    vjp_fn, y_ct = args[-2:]
    zero = ordering.negative_zero_from(y_ct)
    leaves, treedef = jax.tree_util.tree_flatten(vjp_fn)
    leaves = [ordering.add_zero(x, zero) if tie else x for x, tie in zip(leaves, tied, strict=True)]
    params_ct, *inputs_ct = jax.tree_util.tree_unflatten(treedef, leaves)(y_ct)
    return (params_ct, *inputs_ct)
  # custom_vjp counts the variables as argument 0.
  return flax_lift.custom_vjp(fn, forward, backward, nondiff_argnums=tuple(i + 1 for i in static_argnums))
