"""guarded_update: optax's update or none, bit for bit, with the donated state updated in place."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from packnet_jax.train import guarded_update
from packnet_jax.train import optim
from packnet_jax.utils import ordering


def naive_update(tx, grads, opt_state, params, finite):
  """The plain formulation guarded_update must equal."""
  updates, new_opt_state = tx.update(grads, opt_state, params)
  return (guarded_update.select(finite, optax.apply_updates(params, updates), params),
          guarded_update.select(finite, new_opt_state, opt_state))


def tree(seed, scale=1.0):
  rng = np.random.RandomState(seed)
  return {'depth_net': {'conv': {'kernel': jnp.asarray(rng.randn(3, 3, 4, 8) * scale, jnp.float32),
                                 'bias': jnp.asarray(rng.randn(8) * scale, jnp.float32)}},
          'pose_net': {'dense': jnp.asarray(rng.randn(5, 6) * scale, jnp.float32)}}


def assert_trees_identical(a, b, rtol=0.0):
  """Bit for bit (signed zeros included), or within `rtol` (and 1e-9 absolute)."""
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    if rtol:
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-9)
    else:
      assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), (x, y)


@pytest.mark.parametrize('weight_decay', [0.0, 1e-2])
@pytest.mark.parametrize('bad_grad', [None, np.nan, np.inf])
def test_equals_optax_update_or_no_update(weight_decay, bad_grad):
  tx, _ = optim.create_optimizer(depth_lr=2e-4, pose_lr=1e-3, depth_weight_decay=weight_decay,
                                 pose_weight_decay=weight_decay, steps_per_epoch=3)
  params = tree(0)
  opt_state = tx.init(params)
  step = jax.jit(lambda g, s, p, f: guarded_update.guarded_update(tx, g, s, p, f))
  naive = jax.jit(lambda g, s, p, f: naive_update(tx, g, s, p, f))
  for i in range(5):
    grads = tree(10 + i, scale=1e-2)
    if bad_grad is not None and i == 2:
      grads['depth_net']['conv']['kernel'] = grads['depth_net']['conv']['kernel'].at[1, 2, 3, 4].set(bad_grad)
    finite = guarded_update.all_finite(grads)
    assert bool(finite) == (bad_grad is None or i != 2)
    got = step(grads, opt_state, params, finite)
    want = naive(grads, opt_state, params, finite)
    # With an L2 weight decay (g + wd * p, which cancels) the two programs are fused differently and
    # XLA:CPU may contract a multiply-add in one and not the other: an ulp of g + wd * p apart.
    assert_trees_identical(got, want, rtol=1e-6 if weight_decay else 0.0)
    if not bool(finite):
      assert_trees_identical(got, (params, opt_state))
    else:
      assert not np.array_equal(got[0]['pose_net']['dense'], params['pose_net']['dense'])
    params, opt_state = got


def test_after_keeps_every_value_bit_for_bit():
  # (Denormals aside: XLA:CPU's arithmetic flushes them to zero, in the moment update as well.)
  values = jnp.asarray([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 1.2e-38, 3e38], jnp.float32)
  for anchor in (0.0, -0.0, 7.0, np.inf, -np.inf, np.nan, 1e30):
    out = ordering.after({'x': values, 'h': values.astype(jnp.bfloat16), 'i': jnp.arange(3)},
                         {'a': jnp.full((2, 3), anchor), 'b': jnp.asarray(anchor)})
    np.testing.assert_array_equal(out['i'], np.arange(3))
    assert np.asarray(out['x']).tobytes() == np.asarray(values).tobytes()
    assert np.asarray(out['h']).tobytes() == np.asarray(values.astype(jnp.bfloat16)).tobytes()


def donated_update_temp_bytes(update_fn, shape):
  """Compiled temporaries of a jitted Adam step on one [shape] parameter, state donated as in training."""
  tx = optax.adam(1e-3)
  params = {'w': jnp.zeros(shape, jnp.float32)}
  opt_state = tx.init(params)
  grads = {'w': jnp.ones(shape, jnp.float32)}

  def step(params, opt_state, grads):
    return update_fn(tx, grads, opt_state, params, guarded_update.all_finite(grads))
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, grads).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_donated_parameters_and_moments_are_updated_in_place():
  shape = (3, 3, 128, 256)
  leaf = int(np.prod(shape)) * 4
  # The plain formulation keeps a copy of the old moments (XLA reads them for the parameters after
  # overwriting them): this checks that the setting reproduces the problem.
  assert donated_update_temp_bytes(naive_update, shape) >= leaf
  # Left: the is-finite mask XLA materialises for its reduction (1 byte per element).
  assert donated_update_temp_bytes(guarded_update.guarded_update, shape) <= 0.26 * leaf
