"""Fastest measured XLA:CPU options, applied unless the user chose XLA_FLAGS.

XLA:CPU can hand each convolution to a library (XNNPACK or oneDNN) instead of
choosing per convolution itself, and hands some reductions and matrix products to
YNNPACK by default. On this project's networks XNNPACK for every
convolution was the fastest or within run-to-run noise of the fastest in every
comparison (forward passes and train steps; figures in the issue-12 closing
notes, measured with tools/benchmark.py, options alternated run by run). The
options only concern the CPU backend; GPU and TPU ignore them, so the program
itself is the same on every backend.

XLA reads XLA_FLAGS once, when the first backend is created (the first
computation or `jax.devices()`), not at `import jax`. `apply_cpu_defaults()`
must therefore run before that; it is a no-op with a warning afterwards.
"""
import logging
import os

ENV_VAR = 'XLA_FLAGS'
CPU_DEFAULTS = (
    # Every convolution as one XNNPACK call (the rest stays XLA-generated code).
    '--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION',
    # Reductions stay XLA-generated: YNNPACK's (on by default) took 5.5 ms to sum the 3 colour
    # channels of [8, 192, 640, 3] where XLA's loop takes 0.8 ms; in the SelfSup train step
    # (DepthResNet18 + PoseNet, batch 2, 192x640) the photometric loss's channel means ran
    # 10 ms each, and the step went from 1.40 to 1.10 s.
    '--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE',
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
