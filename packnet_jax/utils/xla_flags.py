"""The XLA:CPU options that measured fastest here, applied unless the user chose XLA_FLAGS.

XLA:CPU hands matrix products, convolutions and reductions to the YNNPACK
library by default. On this project's networks XLA's own convolutions and
reductions are faster (the forward of every depth net, and the photometric
loss's channel means), while matrix products stay with the library; the
figures are in docs/performance.md ("CPU defaults for XLA"). GPU and TPU
ignore these options, so the program itself is the same on every backend.

XLA reads XLA_FLAGS once, when the first backend is created (the first
computation or `jax.devices()`), not at `import jax`. `apply_cpu_defaults()`
must therefore run before that; it is a no-op with a warning afterwards.

`run_once(fn, *args)` is for a program that a process runs once (the random
initialisation): it compiles with XLA's cheaper options (FAST_COMPILE_OPTIONS),
because its compile time, not its run time, is what the user waits for.
"""
import logging
import os

ENV_VAR = 'XLA_FLAGS'
CPU_DEFAULTS = (
    # Convolutions and reductions stay XLA-generated; YNNPACK keeps the matrix products.
    '--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE,-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION',
)


def _backend_started():
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  return bool(getattr(xla_bridge, 'backends_are_initialized', lambda: False)())


def apply_cpu_defaults(environ=None):
  """Sets XLA_FLAGS to CPU_DEFAULTS if the user has not set XLA_FLAGS; returns the XLA_FLAGS in effect.

  Args:
    environ: the environment to edit (default os.environ; a dict in tests).
  """
  environ = os.environ if environ is None else environ
  if ENV_VAR in environ:
    return environ[ENV_VAR]
  if environ is os.environ and _backend_started():
    logging.warning('XLA backend already initialised: the XLA:CPU defaults %s were not applied', CPU_DEFAULTS)
    return ''
  environ[ENV_VAR] = ' '.join(CPU_DEFAULTS)
  return environ[ENV_VAR]


# XLA:CPU at backend optimisation level 1 and without LLVM's expensive passes: a program compiles several
# times faster and runs somewhat slower. For a program that runs once, such as the random initialisation,
# that is the shorter wait (docs/performance.md, "Start-up"); its values agree to float32 rounding.
FAST_COMPILE_OPTIONS = {'xla_backend_optimization_level': 1, 'xla_llvm_disable_expensive_passes': True}


def run_once(fn, *args):
  """`jax.jit(fn)(*args)`, compiled with FAST_COMPILE_OPTIONS (for a program that runs once per process).

  Under a transformation (e.g. `jax.eval_shape`) nothing compiles: it is `jax.jit(fn)(*args)`.
  """
  import jax  # pylint: disable=import-outside-toplevel  (this module is read before jax's flags are set)
  jitted = jax.jit(fn)
  if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(args)):
    return jitted(*args)
  return jitted.lower(*args).compile(compiler_options=FAST_COMPILE_OPTIONS)(*args)
