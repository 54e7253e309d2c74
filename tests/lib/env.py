"""Environments of test subprocesses: one device, and XLA options that compile fast."""
import os

from packnet_jax.utils.xla_flags import FAST_COMPILE_OPTIONS

# XLA:CPU options that compile fast (packnet_jax.utils.xla_flags.FAST_COMPILE_OPTIONS), for the tests
# that check what a command or a config does (resume, skip, kill, one workdir for every tool, every
# config's train step), not XLA's code. On the 2-core machine, for the demo's train step at 32x96 on one
# device, this compiles about a third faster than the defaults with a step as fast; level 0 compiles a
# little faster still but runs every step several times slower, which the multi-step CLI tests pay for.
# The README demo in .ci/run runs the entry points' default flags end to end, and the parity tests run
# in-process under those defaults.
FAST_COMPILE_FLAGS = tuple(f'--{key}={str(value).lower()}' for key, value in FAST_COMPILE_OPTIONS.items())


def with_fast_compile(env):
  """`env` (a dict) with FAST_COMPILE_FLAGS added to its XLA_FLAGS."""
  flags = env.get('XLA_FLAGS', '').split()
  return dict(env, XLA_FLAGS=' '.join(flags + [f for f in FAST_COMPILE_FLAGS if f not in flags]))


def single_device_env(fast_compile=False):
  """os.environ for a subprocess that sees ONE CPU device (the fake-device flag removed)."""
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split() if 'xla_force_host_platform_device_count' not in f]
  if flags:
    env['XLA_FLAGS'] = ' '.join(flags)
  else:
    env.pop('XLA_FLAGS', None)
  return with_fast_compile(env) if fast_compile else env
