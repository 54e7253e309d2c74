"""One reference run in its own process: the public PackNet-SfM code on CPU torch.

  python tools/compare/reference_run.py SPEC_JSON OUT_JSON

SPEC_JSON: {"torch_source", "overrides": [[yacs key, value], ...], "seed", "steps", "every", "threads"}.
Everything that decides the numbers is the reference's own: its default yacs config with the
overrides, `prepare_train_config`, `ModelWrapper` (seeding numpy / random / torch with arch.seed,
SelfSupModel with its flips, the networks' own initialisation, KITTIDataset with its train and
validation transforms, Adam param groups and StepLR from `configure_optimizers`, the DataLoaders
of `train_dataloader` / `val_dataloader`) and its evaluation (`validation_step` →
`evaluate_depth` → `compute_depth_metrics`, reduced by `all_reduce_metrics`). The loop is
HorovodTrainer's (zero_grad, training_step, backward, step; StepLR stepped per epoch) without
Horovod, validating every `every` steps instead of every epoch; DataLoader workers are 0 (the
jitter and flips then draw from the main process's `random`, seeded by arch.seed).
"""
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(REPO, 'tools')]

from compare import curves  # noqa: E402  pylint: disable=wrong-import-position
from compare import ref_shims  # noqa: E402  pylint: disable=wrong-import-position
from compare import settings  # noqa: E402  pylint: disable=wrong-import-position


def build(spec):
  """(ModelWrapper, train loader, validation loader) from the spec, all by the reference's code."""
  torch_reference = ref_shims.install()
  torch_reference.import_reference(spec['torch_source'])
  ref_shims.patch_single_process_reduce()
  from packnet_sfm.models.model_wrapper import ModelWrapper  # pylint: disable=import-outside-toplevel
  from packnet_sfm.utils.config import prepare_train_config  # pylint: disable=import-outside-toplevel
  cfg = settings.load_reference_defaults(spec['torch_source'])
  for key, value in spec['overrides']:
    settings.set_key(cfg, key, value)
  cfg.arch.seed = int(spec['seed'])
  cfg.arch.max_epochs = max(cfg.arch.max_epochs, int(spec['steps']))  # the loop stops by steps
  cfg.datasets.train.num_workers = cfg.datasets.validation.num_workers = cfg.datasets.test.num_workers = 0
  cfg.datasets.test.path = []  # not used here
  cfg = prepare_train_config(cfg)
  wrapper = ModelWrapper(cfg)
  wrapper.configure_optimizers()
  return wrapper, wrapper.train_dataloader(), wrapper.val_dataloader()[0]


def validate(wrapper, loader, step, start):
  """One validation with the reference's evaluation; returns a curves.row."""
  import torch  # pylint: disable=import-outside-toplevel
  from packnet_sfm.utils.depth import compute_depth_metrics, inv2depth  # pylint: disable=import-outside-toplevel
  from packnet_sfm.utils.reduce import all_reduce_metrics  # pylint: disable=import-outside-toplevel
  t0 = time.time()
  wrapper.eval()
  seen = []  # the model's outputs: evaluate_depth runs it on the image, then on its mirror

  def as_list(module, args, output):
    # The depth nets return one tensor in eval mode, which evaluate_depth indexes as a list
    # (docs/reference.md §11.15): hand it the list it expects.
    if not isinstance(output['inv_depths'], (list, tuple)):
      output = dict(output, inv_depths=[output['inv_depths']])
    seen.append(output['inv_depths'][0])
    return output

  hook = wrapper.model.register_forward_hook(as_list)
  outputs, spreads = [], []
  try:
    with torch.no_grad():
      for i, batch in enumerate(loader):
        seen.clear()
        output = wrapper.validation_step(batch, i, 0)
        # What a one-depth prediction scores after median scaling, by the same metrics code.
        output['depth_const'] = compute_depth_metrics(
            wrapper.config.model.params, gt=batch['depth'], pred=torch.ones_like(batch['depth']),
            use_gt_scale=True)
        outputs.append(output)
        spreads.extend(curves.relative_spread(inv2depth(seen[0])[:, 0].numpy()))
  finally:
    hook.remove()
  metrics = all_reduce_metrics([outputs], wrapper.validation_dataset, 'depth')[0]
  abs_rel, a1 = 0, 4  # compute_depth_metrics: abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3
  return curves.row(
      step=step, abs_rel=metrics['depth_gt'][abs_rel], a1=metrics['depth_gt'][a1],
      abs_rel_pp=metrics['depth_pp_gt'][abs_rel], a1_pp=metrics['depth_pp_gt'][a1],
      baseline_abs_rel=metrics['depth_const'][abs_rel], baseline_a1=metrics['depth_const'][a1],
      spread=sum(spreads) / len(spreads), num_samples=len(wrapper.validation_dataset[0]),
      wall_s=time.time() - start, val_s=time.time() - t0)


def main(argv):
  spec_path, out_path = argv[1:3]
  start = time.time()
  with open(spec_path) as fh:
    spec = json.load(fh)
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(int(spec['threads']))
  wrapper, train_loader, val_loader = build(spec)
  steps, every = int(spec['steps']), int(spec['every'])
  rows = []

  def record(step):
    rows.append(validate(wrapper, val_loader, step, start))
    curves.write_json(out_path, rows)
    print(f'reference seed {spec["seed"]} step {step}: AbsRel {rows[-1]["abs_rel"]:.4f} '
          f'δ<1.25 {rows[-1]["a1"]:.4f} ({rows[-1]["wall_s"]:.0f} s)', flush=True)
    wrapper.train()

  record(0)
  step = 0
  while step < steps:
    wrapper.train()
    if hasattr(train_loader.sampler, 'set_epoch'):
      train_loader.sampler.set_epoch(wrapper.current_epoch)
    for i, batch in enumerate(train_loader):
      wrapper.optimizer.zero_grad()
      output = wrapper.training_step(batch, i)
      output['loss'].backward()
      wrapper.optimizer.step()
      step += 1
      if step % every == 0 or step == steps:
        record(step)
      if step == steps:
        break
    else:
      wrapper.current_epoch += 1
      wrapper.scheduler.step()


if __name__ == '__main__':
  main(sys.argv)
