"""TrainState: everything a training run needs to continue exactly.

A flax.struct dataclass, so it is a pytree (jit/pmap/orbax handle it directly);
the optax transformation is a static field and is not checkpointed.

Fields:
  step: number of train steps run (applied or skipped); also the data
    iterator position, so resuming restarts the input pipeline at `step`.
  params: {'depth_net': …, 'pose_net': …}.
  batch_stats: BatchNorm running statistics ({} for nets without BN).
  opt_state: optax state (Adam moments and counts per network).
  rng: base PRNG key; step t uses fold_in(rng, t), so randomness does not
    depend on how the run was split into restarts.
  skipped_steps: total steps skipped because the loss/grads were not finite.
  bad_streak: consecutive non-finite steps so far (0 after a good step).
"""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  skipped_steps: jax.Array
  bad_streak: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, *, params, batch_stats, tx, rng, step=0):
    """A fresh state at `step` with a newly initialised optimiser (jitted: one program, not an
    eager op per parameter)."""
    return cls(step=jnp.asarray(step, jnp.int32), params=params,
               batch_stats=batch_stats if batch_stats is not None else {},
               opt_state=jax.jit(tx.init)(params), rng=rng,
               skipped_steps=jnp.zeros((), jnp.int32), bad_streak=jnp.zeros((), jnp.int32),
               tx=tx)


def step_rng(rng, step):
  """The PRNG key of train step `step` (independent of restarts)."""
  return jax.random.fold_in(rng, step)
