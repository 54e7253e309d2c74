"""The settings both sides must share, as our config keys next to the reference's yacs keys.

The reference's config is built from ours (`reference_overrides`) on top of its own defaults
(`configs/default_config.py` of the checkout, which needs only yacs), then both resolved configs are
read back through the same table (`compare`): a setting that one side cannot express, or that a
`--ref.KEY=VALUE` override changed, shows up as a difference and the tool refuses to run. Settings that
are not config keys on one side (Adam's betas and epsilon, gradient clipping, the compute dtype) are
read from that side's code or stated as the reference's fixed behaviour.
"""
import importlib.util
import inspect
import os
import re

# Reference dataset keys are lists (one entry per dataset); the compared runs use one dataset.
_LIST_KEYS = ('dataset', 'path', 'split', 'depth_type', 'input_depth_type', 'repeat')


def _entries():
  """(label, our key or None, reference key or None); None means a fixed value (see CONSTANTS)."""
  rows = [('model', 'model.name', 'model.name'),
          ('checkpoint_path', 'model.checkpoint_path', 'model.checkpoint_path'),
          ('continue_training', 'model.continue_training', None)]
  for net in ('depth_net', 'pose_net'):
    rows += [(f'{net}.{k}', f'model.{net}.{k}', f'model.{net}.{k}')
             for k in ('name', 'version', 'dropout', 'checkpoint_path')]
    rows.append((f'{net}.pretrained_encoder', f'model.{net}.pretrained_encoder', None))
  for k in ('num_scales', 'progressive_scaling', 'flip_lr_prob', 'rotation_mode', 'upsample_depth_maps',
            'ssim_loss_weight', 'smooth_loss_weight', 'C1', 'C2', 'photometric_reduce_op', 'clip_loss',
            'padding_mode', 'automask_loss', 'velocity_loss_weight', 'supervised_method',
            'supervised_num_scales', 'supervised_loss_weight'):
    rows.append((f'loss.{k}', f'model.loss.{k}', f'model.loss.{k}'))
  rows += [(f'eval.{k}', f'model.params.{k}', f'model.params.{k}')
           for k in ('crop', 'min_depth', 'max_depth', 'scale_output')]
  rows.append(('eval.max_batches', 'eval.max_batches', None))
  rows += [('optimizer', 'optim.name', 'model.optimizer.name')]
  for net in ('depth', 'pose'):
    rows += [(f'{net}.{k}', f'optim.{net}.{k}', f'model.optimizer.{net}.{k}') for k in ('lr', 'weight_decay')]
  rows += [('adam.betas', None, None), ('adam.eps', None, None), ('grad_clip_norm', 'optim.grad_clip_norm', None)]
  rows += [(f'scheduler.{k}', f'optim.scheduler.{k}', f'model.scheduler.{k}')
           for k in ('name', 'step_size', 'gamma')]
  rows += [('compute_dtype', 'compute_dtype', None), ('steps_per_epoch', 'arch.steps_per_epoch', None)]
  rows += [(f'augmentation.{k}', f'datasets.augmentation.{k}', f'datasets.augmentation.{k}')
           for k in ('image_shape', 'jittering', 'crop_train_borders', 'crop_eval_borders')]
  for split, keys in (('train', ('dataset', 'path', 'split', 'depth_type', 'input_depth_type', 'batch_size',
                                 'back_context', 'forward_context', 'repeat')),
                      ('validation', ('dataset', 'path', 'split', 'depth_type', 'input_depth_type',
                                      'batch_size'))):
    rows += [(f'{split}.{k}', f'datasets.{split}.{k}', f'datasets.{split}.{k}') for k in keys]
  rows.append(('train.shuffle', 'datasets.train.shuffle', None))
  return tuple(rows)


ENTRIES = _entries()
# What the reference does where it has no key: torch.optim.Adam's betas / eps are read from torch
# (reference_adam_constants); it never clips gradients, computes in float32, its epoch is the train
# split divided by the batch (our steps_per_epoch=0), it shuffles the train split, validates on the
# whole split (our eval.max_batches=0), trains from its own initialisation (no local ImageNet file,
# no continued optimiser state).
REFERENCE_FIXED = {'grad_clip_norm': 0.0, 'compute_dtype': 'float32', 'steps_per_epoch': 0.0,
                   'train.shuffle': True, 'eval.max_batches': 0.0, 'continue_training': False,
                   'depth_net.pretrained_encoder': '', 'pose_net.pretrained_encoder': ''}


def normalise(value):
  """Comparable form: tuples for sequences, a one-element list as its element, floats for numbers."""
  if hasattr(value, 'items'):
    return {k: normalise(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    value = tuple(normalise(v) for v in value)
    return value[0] if len(value) == 1 else value
  if isinstance(value, bool):
    return value
  if isinstance(value, int):
    return float(value)
  return value


def get(tree, dotted):
  """tree['a']['b'] for 'a.b' (ConfigDict, yacs CfgNode or plain dicts)."""
  for part in dotted.split('.'):
    tree = tree[part]
  return tree


def port_adam_constants():
  """(betas, eps) of the port's Adam, read from the optax call in packnet_jax/train/optim.py."""
  from packnet_jax.train import optim  # pylint: disable=import-outside-toplevel
  match = re.search(r'scale_by_adam\(\s*b1=([-+.\deE]+),\s*b2=([-+.\deE]+),\s*eps=([-+.\deE]+)',
                    inspect.getsource(optim))
  if not match:
    raise ValueError('cannot read Adam b1/b2/eps from packnet_jax/train/optim.py')
  b1, b2, eps = (float(g) for g in match.groups())
  return (b1, b2), eps


def reference_adam_constants():
  """(betas, eps) of torch.optim.Adam's defaults, which the reference's param groups keep."""
  import torch  # pylint: disable=import-outside-toplevel
  params = inspect.signature(torch.optim.Adam).parameters
  return tuple(float(b) for b in params['betas'].default), float(params['eps'].default)


def port_values(config, adam=None):
  """{label: value} of our resolved config (adam: (betas, eps), default read from the port's code)."""
  betas, eps = adam or port_adam_constants()
  out = {}
  for label, ours, _ in ENTRIES:
    out[label] = normalise(get(config, ours)) if ours else None
  out['adam.betas'], out['adam.eps'] = normalise(betas), eps
  return out


def reference_values(cfg, adam):
  """{label: value} of the reference's resolved yacs config (adam: torch's (betas, eps))."""
  out = {}
  for label, _, theirs in ENTRIES:
    out[label] = normalise(get(cfg, theirs)) if theirs else REFERENCE_FIXED.get(label)
  out['adam.betas'], out['adam.eps'] = normalise(adam[0]), adam[1]
  return out


def compare(ours, theirs):
  """(lines of the side-by-side table, labels that differ)."""
  width = max(len(label) for label, _, _ in ENTRIES)
  lines = [f'{"setting":<{width}}  {"packnet-jax":<28}  {"reference (yacs)":<28}']
  differ = []
  for label, _, _ in ENTRIES:
    a, b = ours[label], theirs[label]
    same = _equal(a, b)
    if not same:
      differ.append(label)
    lines.append(f'{label:<{width}}  {_show(a):<28}  {_show(b):<28}{"" if same else "  <-- DIFFERS"}')
  return lines, differ


def _equal(a, b):
  if isinstance(a, float) and isinstance(b, float):
    return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
  if isinstance(a, tuple) and isinstance(b, tuple):
    return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
  return a == b


def _show(value):
  if isinstance(value, tuple):
    return '(' + ', '.join(_show(v) for v in value) + (',)' if len(value) == 1 else ')')
  if isinstance(value, float) and value == int(value) and abs(value) < 1e6:
    return str(int(value))
  return repr(value) if isinstance(value, str) else str(value)


def reference_overrides(config):
  """[(reference yacs key, value)] that carry our config over to the reference's keys."""
  out = []
  for _, ours, theirs in ENTRIES:
    if not (ours and theirs):
      continue
    value = get(config, ours)
    value = tuple(value) if isinstance(value, (list, tuple)) else value
    if theirs.rsplit('.', 1)[1] in _LIST_KEYS and theirs.startswith('datasets.'):
      value = [value]
    out.append((theirs, value))
  return out


def load_reference_defaults(source):
  """The reference's own default yacs config (configs/default_config.py of the checkout)."""
  path = os.path.join(os.fspath(source), 'configs', 'default_config.py')
  spec = importlib.util.spec_from_file_location('packnet_sfm_default_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_cfg_defaults()


def set_key(cfg, dotted, value):
  """Sets one yacs key (the key must exist: a typo is an error, as in yacs' merge_from_list)."""
  *parents, leaf = dotted.split('.')
  node = cfg
  for part in parents:
    node = node[part]
  if leaf not in node:
    raise ValueError(f'--ref.{dotted}: not a key of the reference config')
  if isinstance(node[leaf], tuple) and isinstance(value, list):
    value = tuple(value)  # JSON has no tuples
  node[leaf] = value


def parse_ref_override(text):
  """'KEY=VALUE' (VALUE as a Python literal, else a string) → (KEY, value)."""
  import ast  # pylint: disable=import-outside-toplevel
  if '=' not in text:
    raise ValueError(f'--ref: expected KEY=VALUE, got {text!r}')
  key, raw = text.split('=', 1)
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  return key.strip(), value


def reference_config(config, source, extra=()):
  """The reference's resolved yacs config for our `config` (plus `extra` (key, value) overrides)."""
  cfg = load_reference_defaults(source)
  for key, value in list(reference_overrides(config)) + list(extra):
    set_key(cfg, key, value)
  return cfg
