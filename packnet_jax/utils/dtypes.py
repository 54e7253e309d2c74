"""The dtype that parameters, statistics, losses and outputs keep for a compute dtype.

Networks compute in the compute dtype (`compute_dtype`: float32, a 16-bit type or float64), while
everything that accumulates stays wider; both the networks (models/) and the objective (losses/) need
the same rule, so it lives below them.
"""
import jax.numpy as jnp


def param_dtype(dtype):
  """The dtype of parameters, normalisation statistics and outputs for compute dtype `dtype`.

  float64 keeps everything in float64 (the noise-free run that float32 is measured against);
  float32 and the 16-bit dtypes keep float32, so a 16-bit run rounds only its activations.
  """
  return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
