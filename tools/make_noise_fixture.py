"""Writes tests/fixtures/reference/training_noise.json: torch's own float32-vs-float64 training noise.

    PACKNET_SFM_SOURCE=/tmp/packnet-sfm python tools/make_noise_fixture.py [--output PATH]

Tool-only (torch, the public reference via tools/torch_reference.py). For every scenario of
tools/training_noise.py it trains the reference's SelfSupModel (DepthResNet18 + PoseNet, the loss
options of configs/default.py, flip_lr_prob 0 or 1 for a fixed flip decision) with torch.optim.Adam
(configs/default.py's learning rates, betas 0.9/0.999, eps 1e-8) for 5 steps in float32 and in
float64 (`.double()` of the same float32 start and inputs), and stores only the per-step summary
figures (tools/training_noise.step_figures), the set-up and the fixed jitter factors.

The reference builds its loss cameras from `K.float()` with a float32 identity pose; its float64 run
gets both in the run's dtype instead (float32 ones cannot multiply float64 points), which is what our
float64 mode does.
"""
import copy
import datetime
import json
import pathlib
import platform
import sys

import numpy as np
from absl import flags

import torch_reference  # tools/ (this script's folder) is first on sys.path
import training_noise as tn
from packnet_jax import cli

sys.path.insert(0, str(tn.REPO / 'tests'))


def _cameras_in_run_dtype(torch):
  """The photometric loss's `Camera(K=K.float())` gets K, and its identity pose, in the run's dtype."""
  import importlib  # pylint: disable=import-outside-toplevel
  loss_module = importlib.import_module('packnet_sfm.losses.multiview_photometric_loss')
  pose_module = importlib.import_module('packnet_sfm.geometry.pose')
  camera = loss_module.Camera
  if getattr(camera, '_in_run_dtype', False):
    return

  class Camera(camera):
    _in_run_dtype = True

    def __init__(self, K, Tcw=None):
      K = K.to(torch.get_default_dtype())
      super().__init__(K, pose_module.Pose.identity(len(K), dtype=K.dtype) if Tcw is None else Tcw)
  loss_module.Camera = Camera


def _batch(torch, augmented, dtype):
  """The scenario's batch as the reference reads it (NCHW tensors, contexts as a list)."""
  from lib import pil_jitter  # pylint: disable=import-outside-toplevel
  target, contexts, K = tn.originals()
  jittered_t, jittered_c = target, contexts
  if augmented:
    jittered_t = np.stack([pil_jitter.pil_jitter_array(target[i], f, o) for i, (f, o) in enumerate(tn.JITTER)])
    jittered_c = np.stack([pil_jitter.pil_jitter_array(contexts[i], f, o) for i, (f, o) in enumerate(tn.JITTER)])

  def tensor(levels):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(tn.unit(levels), -1, -3))).to(dtype)
  return {'rgb': tensor(jittered_t), 'rgb_context': [tensor(jittered_c[:, j]) for j in range(contexts.shape[1])],
          'rgb_original': tensor(target),
          'rgb_context_original': [tensor(contexts[:, j]) for j in range(contexts.shape[1])],
          'intrinsics': torch.from_numpy(K).to(dtype)}


def _networks(torch, start):
  """(depth net, pose net) of the reference, float32: recipe weights or torch's own init (seed SEED)."""
  torch.manual_seed(tn.SEED)
  depth = torch_reference.build_network('DepthResNet', version='18')
  pose = torch_reference.build_network('PoseNet', nb_ref_imgs=2)
  if start == 'checkpoint':
    for net, name in ((depth, 'DepthResNet18'), (pose, 'PoseNet')):
      net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in tn.recipe_state_dict(name).items()})
  return depth, pose


def _run(torch, depth, pose, augmented, dtype):
  """5 Adam steps of SelfSupModel; per step the loss, every gradient and every parameter after it."""
  config = tn.default_config()
  torch.set_default_dtype(dtype)
  depth, pose = copy.deepcopy(depth).to(dtype), copy.deepcopy(pose).to(dtype)
  loss_kwargs = dict(config.model.loss.to_dict(), flip_lr_prob=1.0 if augmented else 0.0)
  model = torch_reference.build_selfsup_model(depth, pose, loss_kwargs)
  model.train()
  optimizer = torch.optim.Adam([
      {'params': list(depth.parameters()), 'lr': config.optim.depth.lr},
      {'params': list(pose.parameters()), 'lr': config.optim.pose.lr}], betas=(0.9, 0.999), eps=1e-8)
  names = {id(p): n for n, p in model.named_parameters()}
  batch = _batch(torch, augmented, dtype)
  records = []
  for _ in range(tn.STEPS):
    optimizer.zero_grad()
    loss = model({k: (list(v) if isinstance(v, list) else v.clone()) for k, v in batch.items()})['loss']
    loss.backward()
    grads = {names[id(p)]: p.grad.detach().double().numpy().copy()
             for group in optimizer.param_groups for p in group['params'] if p.grad is not None}
    optimizer.step()
    records.append({'loss': float(loss), 'grads': grads,
                    'params': {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}})
  torch.set_default_dtype(torch.float32)
  return records


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('output', str(tn.FIXTURE), 'fixture file to write', flag_values=fv)
  flags.DEFINE_string('torch_source', None, 'packnet-sfm checkout (else $PACKNET_SFM_SOURCE)', flag_values=fv)
  fv(argv)
  return fv


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_flags, _write_fixture, argv)


def _write_fixture(args):
  import torch  # pylint: disable=import-outside-toplevel
  torch_reference.import_reference(args.torch_source)
  _cameras_in_run_dtype(torch)
  torch.set_num_threads(2)
  scenarios = {}
  for scenario in tn.SCENARIOS:
    start, augmentation = scenario.split('/')
    depth, pose = _networks(torch, start)
    runs = {str(dtype): _run(torch, depth, pose, augmentation == 'augmented', dtype)
            for dtype in (torch.float32, torch.float64)}
    scenarios[scenario] = tn.step_figures(runs['torch.float32'], runs['torch.float64'])
    print(scenario, json.dumps([{k: s[k] for k in ('loss_rel',)} | {'grads_median': s['grads']['median']}
                                for s in scenarios[scenario]]), flush=True)
  out = {
      'setup': {
          'reference': 'TRI-ML/packnet-sfm de53b31, SelfSupModel(DepthResNet(version="18"), PoseNet(nb_ref_imgs=2))',
          'loss': 'configs/default.py model.loss; flip_lr_prob 1 (augmented) or 0 (plain)',
          'optimizer': 'torch.optim.Adam, per-network lr from configs/default.py, betas (0.9, 0.999), eps 1e-8',
          'steps': tn.STEPS, 'seed': tn.SEED, 'batch': 'selfsup_model_step.npz inputs as 8-bit levels',
          'jitter': [{'factors': f, 'order': list(o)} for f, o in tn.JITTER],
          'torch': torch.__version__, 'machine': platform.machine(), 'date': datetime.date.today().isoformat(),
          'command': 'PACKNET_SFM_SOURCE=/tmp/packnet-sfm python tools/make_noise_fixture.py',
      },
      'scenarios': scenarios,
  }
  pathlib.Path(args.output).write_text(json.dumps(out, indent=1) + '\n')
  print(f'wrote {args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
