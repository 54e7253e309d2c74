"""What a run does before its first step: the initialisation compiles as a run-once program, and a
resumed run restores into a template built from shapes alone (no initialisation program at all)."""
import jax
import numpy as np

from lib import tiny_training
from packnet_jax.models import initializers
from packnet_jax.train import model_init
from packnet_jax.train import train
from packnet_jax.utils import xla_flags


def _draws(key):
  """One draw from each of the reference's random initialisers (uniform, normal, torch's default)."""
  keys = jax.random.split(key, 3)
  return {'xavier_uniform': initializers.xavier_uniform(keys[0], (3, 3, 64, 128)),
          'kaiming_normal_fan_out': initializers.kaiming_normal_fan_out(keys[1], (7, 7, 3, 64)),
          'torch_default_kernel': initializers.torch_default_kernel(keys[2], (3, 3, 128, 1))}


def test_run_once_gives_jits_values_to_rounding():
  """The same draws as the optimised program, up to float32 rounding at each tensor's scale."""
  key = jax.random.PRNGKey(7)
  once, jitted = xla_flags.run_once(_draws, key), jax.jit(_draws)(key)
  for name, value in once.items():
    value, expected = np.asarray(value), np.asarray(jitted[name])
    assert value.dtype == np.float32 and value.shape == expected.shape, name
    scale = np.abs(expected).max()
    assert np.abs(value - expected).max() <= 2 * np.finfo(np.float32).eps * scale, name
    assert np.mean(value == expected) > 0.5, name   # most draws are bit-identical
  # Under a transformation it is a plain jit: shapes, nothing compiled.
  shapes = jax.eval_shape(lambda k: xla_flags.run_once(_draws, k), key)
  assert {k: v.shape for k, v in shapes.items()} == {k: v.shape for k, v in jitted.items()}


def _backend_compiles(fn):
  """(fn(), the number of XLA compilations it ran)."""
  compiles = []

  def listener(event, duration, **_):
    if event == '/jax/core/compile/backend_compile_duration':
      compiles.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    return fn(), len(compiles)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def test_restore_template_is_the_fresh_state_s_structure_and_compiles_nothing():
  config = tiny_training.tiny_config(max_steps=2)
  model = model_init.build_model(config)
  fresh, _ = train.create_train_state(config, model, steps_per_epoch=2)
  (template, schedules), compiles = _backend_compiles(lambda: train.restore_template(config, model, 2))
  assert compiles == 0
  # (tx, the static optax transformation, is an equal but separate object: not compared.)
  fresh_leaves, fresh_tree = jax.tree_util.tree_flatten(fresh.replace(tx=None))
  template_leaves, template_tree = jax.tree_util.tree_flatten(template.replace(tx=None))
  assert template_tree == fresh_tree
  assert [(np.shape(a), np.asarray(a).dtype) for a in template_leaves] == [
      (np.shape(a), np.asarray(a).dtype) for a in fresh_leaves]
  assert all(isinstance(a, np.ndarray) and not a.any() for a in template_leaves)
  assert float(schedules['depth'](0)) == np.float32(config.optim.depth.lr)
