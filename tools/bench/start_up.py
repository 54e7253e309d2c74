"""`start_up`: what a run pays before its first step for its initial variables.

Per network (with PoseNet, as a self-supervised run builds them) and image shape:
the random initialisation compiled with XLA's default options and as a run-once
program (`xla_flags.run_once`, what training uses), each as compile and run
seconds, and the template a resumed run restores into (`jax.eval_shape`, nothing
compiled). Every compilation is fresh (no persistent cache).
"""
import functools
import time

import jax
from absl import flags

from bench import networks, records
from packnet_jax import cli
from packnet_jax.models import registry
from packnet_jax.models import sfm_model
from packnet_jax.utils import xla_flags


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('network', 'DepthResNet18', 'depth networks ("all" or a comma-separated list)',
                      flag_values=fv)
  flags.DEFINE_string('shape', '192,640', 'H,W training image shape, multiples of 32', flag_values=fv)
  fv(argv)
  return fv


def _timed(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - start


def run(fv):
  """One record per depth network."""
  shape = cli.parse_image_shape(fv.shape, '--shape')
  out = []
  for name in networks.network_names(fv.network):
    kind, cls, version = networks.NETWORKS[name]
    if kind != 'depth':
      continue
    model = sfm_model.SfmModel(depth_net=registry.build_depth_net(cls, version),
                               pose_net=registry.build_pose_net('PoseNet', nb_ref_imgs=networks.NUM_CONTEXT))
    rgb, ctx = sfm_model.init_inputs(model, shape, networks.NUM_CONTEXT, 1)
    init, key = functools.partial(model.init, train=False), jax.random.PRNGKey(0)
    record = {'benchmark': 'start_up', 'network': name, 'pose_network': 'PoseNet', 'shape': list(shape)}
    for label, options in (('default', None), ('run_once', xla_flags.FAST_COMPILE_OPTIONS)):
      lowered = jax.jit(init).lower(key, rgb, ctx)
      compiled, record[f'{label}_compile_s'] = _timed(lambda: lowered.compile(compiler_options=options))
      _, record[f'{label}_run_s'] = _timed(lambda: compiled(key, rgb, ctx))
    _, record['resume_template_s'] = _timed(lambda: sfm_model.variable_shapes(model, shape, networks.NUM_CONTEXT))
    out.append(records.emit(record))
  return out
