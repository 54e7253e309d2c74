"""Fastest measured XLA:CPU options, applied unless the user chose XLA_FLAGS.

XLA:CPU hands matrix products, convolutions and reductions to the YNNPACK
library by default, and generates the rest itself. Measured on this project's
networks (2-core AVX-512 CPU, jax/jaxlib 0.10.2), in one process, the two
variants compiled side by side and timed in turns (`jax.jit(...,
compiler_options=...)`), eval forward at batch 1, 192x640, time with XLA's
own convolutions / time with YNNPACK's: PackNet01 0.79, PackNetSlim01 0.80,
DepthResNet50 0.82, DepthResNet18 0.89, PoseNet 1.13 (its 9-channel 7x7
stem: 3.9 vs 2.8 ms), SelfSup train step (DepthResNet18 + PoseNet, batch 2)
0.99. One 1280 -> 256 channel 3x3 convolution at 12x40 took 20-26 ms in
YNNPACK and 8 ms in XLA's own. So convolutions stay XLA's; matrix products
keep going to the library. (`--xla_cpu_experimental_xnn_fusion_type`, the
earlier default here, no longer changes the compiled program: YNNPACK took
those convolutions.) The options only concern the CPU backend; GPU and TPU
ignore them, so the program itself is the same on every backend.

XLA reads XLA_FLAGS once, when the first backend is created (the first
computation or `jax.devices()`), not at `import jax`. `apply_cpu_defaults()`
must therefore run before that; it is a no-op with a warning afterwards.
"""
import logging
import os

ENV_VAR = 'XLA_FLAGS'
CPU_DEFAULTS = (
    # Convolutions and reductions stay XLA-generated; YNNPACK keeps the matrix products.
    # Convolutions: see the module docstring. Reductions: YNNPACK took 5.5 ms to sum the 3 colour
    # channels of [8, 192, 640, 3] where XLA's loop takes 0.8 ms; in the SelfSup train step
    # (DepthResNet18 + PoseNet, batch 2, 192x640) the photometric loss's channel means ran 10 ms
    # each, and the step went from 1.40 to 1.10 s.
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
