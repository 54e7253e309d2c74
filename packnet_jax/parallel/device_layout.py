"""Host ↔ device layout of the training state and batches: the one place that knows it.

One device: the step is `jax.jit`ted, the state lives on device 0 and batches
are [B, ...]. Several devices: the step is `jax.pmap`ped, the state has one
copy per local device ([D, ...]) and batches are [D, B, ...]. The data
pipeline always yields [D, B, ...] (D = local devices), so the loop hands every
batch to `shard` and reads every device value back through `host`.
"""
import dataclasses

import jax
import numpy as np

AXIS_NAME = 'batch'


@dataclasses.dataclass(frozen=True)
class DeviceLayout:
  """`replicated`: True when the step is pmapped (more than one device in the run)."""
  replicated: bool

  @classmethod
  def for_run(cls):
    """pmap whenever the run (all processes) has more than one device."""
    return cls(replicated=jax.device_count() > 1)

  def put(self, tree):
    """Host pytree → device layout of the step's inputs (replicated, or on device 0)."""
    return replicate(tree) if self.replicated else jax.device_put(tree, jax.local_devices()[0])

  def host(self, tree):
    """Device pytree (state, metrics) → one host copy as numpy arrays."""
    return unreplicate(tree) if self.replicated else jax.tree_util.tree_map(np.asarray, jax.device_get(tree))

  def shard(self, batch):
    """Pipeline batch [D, B, ...] → the step's batch layout ([D, B, ...] for pmap, [D·B, ...] for jit)."""
    return batch if self.replicated else {k: unshard(v) for k, v in batch.items()}


def replicate(tree):
  """Host pytree → one copy per local device, laid out exactly like the pmapped step's
  outputs (same mesh axis), so the step compiles once, not twice."""
  n = jax.local_device_count()
  stacked = jax.tree_util.tree_map(lambda x: np.stack([np.asarray(x)] * n), tree)
  return jax.pmap(lambda x: x, axis_name=AXIS_NAME)(stacked)


def unreplicate(tree):
  """The first replica of every leaf, as host numpy.

  Read from the first local shard itself: indexing `x[0]` would run (and first compile) a gather
  per leaf shape, ~5 s of every checkpoint of a small model on CPU.
  """
  def first(x):
    if isinstance(x, jax.Array):
      return np.asarray(x.addressable_data(0)).reshape(x.shape[1:])
    return np.asarray(x)[0]
  return jax.tree_util.tree_map(first, tree)


def unshard(x):
  """[D, B, ...] → [D·B, ...] (numpy)."""
  x = np.asarray(x)
  return x.reshape((-1,) + x.shape[2:])

