"""The optimiser update of a train step, skipped when a step is not finite, in place on a donated state.

`guarded_update(tx, grads, opt_state, params, finite)` returns the new
(params, opt_state): optax's update applied when `finite`, the old values
otherwise. It computes the same arithmetic as

    updates, new_opt_state = tx.update(grads, opt_state, params)
    params = where(finite, params + updates, params)
    opt_state = where(finite, new_opt_state, opt_state)

but written so that XLA can update the donated parameters and moments in place.
(Equal bit for bit in tests/test_guarded_update.py; inside the whole train step
XLA fuses the update differently, and the parameters after a step can differ
from the formulation above by a few ulp.)

Written as above, XLA computes the parameters from the *old* Adam moments
(it repeats the cheap moment arithmetic inside the parameter loop) while the
moments are overwritten in their own donated buffers, and nothing orders the
two loops; so it keeps a copy of both moments of every parameter: two
parameter-sized temporaries (docs/performance.md, "Memory"). Here
the parameters are updated first, and the moment update is made to depend on
the updated parameters through a scalar that is always -0.0 (`utils.ordering.after`), so the
old moments are dead when they are overwritten and nothing is copied. An
`optimization_barrier` would say the same, but XLA:CPU removes barriers before
it orders and fuses anything; a data dependency holds on every backend.

`tx.update` runs twice: the first call's state and the second call's updates
are unused and removed by XLA. The second call gets the old parameters (for an
L2 weight decay); when the transformation reads them, XLA keeps them, at the
cost of one parameter-sized buffer.
"""
import jax
import jax.numpy as jnp
import optax

from packnet_jax.utils import ordering


def all_finite(tree):
  """True iff every element of every leaf of `tree` is finite."""
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def select(pred, new, old):
  """`new` where the scalar `pred` holds, else `old`, leaf by leaf."""
  return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def guarded_update(tx, grads, opt_state, params, finite):
  """(params, opt_state) after one step of `tx` if `finite`, else unchanged (see the module docstring)."""
  updates, _ = tx.update(grads, opt_state, params)
  new_params = select(finite, optax.apply_updates(params, updates), params)
  _, new_opt_state = tx.update(ordering.after(grads, new_params), opt_state, params)
  return new_params, select(finite, new_opt_state, opt_state)
