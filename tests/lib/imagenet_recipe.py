"""Writes tests/fixtures/imagenet/*.npz: torch's ResNet encoder features on recipe weights.

The fixtures check that torchvision ImageNet files (`resnet18-f37072fd.pth`,
...) load into our ResNet encoder with torch's numbers. No real ImageNet
weights are needed: `torchvision_state_dict(num_layers)` fills torchvision's
exact key layout with seeded random values (the test rebuilds the same dict
without torch and writes it as a `.pth` with tests/lib/torch_writer.py), so only
the input and the outputs are vendored (< 2 MB).

torchvision itself is not installable next to the pinned torch, so the
torchvision ResNet is written out below in plain torch (same module and key
names: conv1/bn1/layer1..4 of BasicBlock or Bottleneck/downsample/fc) and
loaded with `load_state_dict(strict=True)`, which proves the recipe has
torchvision's key set and shapes. The forward is the reference's
`ResnetEncoder.forward`: (x − 0.45) / 0.225, then the 5 feature levels.

`resnet18_pose.npz` follows the reference's `resnet_multiimage_input`: the
first conv is `cat([conv1.weight] * 2, dim=1) / 2` and the input is
cat[target, context] (6 channels).

Re-run (needs torch, test-only; from the repository root):

  python tests/lib/imagenet_recipe.py            # writes tests/fixtures/imagenet/
  python tests/lib/imagenet_recipe.py --check    # recomputes and compares, writes nothing

Outputs: resnet18.npz, resnet50.npz (input [1,64,64,3] NHWC in [0,1], f0..f4
NHWC) and resnet18_pose.npz (target, context, f0..f4 of the 6-channel encoder).
"""
import argparse
import collections
import pathlib

import numpy as np

FIXTURE_DIR = pathlib.Path(__file__).resolve().parents[1] / 'fixtures' / 'imagenet'
IMAGE_SHAPE = (1, 64, 64, 3)
SEEDS = {18: 18, 50: 50}
# num_layers → (bottleneck?, blocks per stage), as torchvision.
STAGES = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3))}
WIDTHS = (64, 128, 256, 512)


# --------------------------------------------------------------------------- recipe (numpy only)
def _conv_entries(prefix, out_c, in_c, k):
  return [(f'{prefix}.weight', (out_c, in_c, k, k))]


def _bn_entries(prefix, c, last_in_block=False):
  kind = 'bn_last' if last_in_block else 'bn'
  return [(f'{prefix}.{leaf}', (c,), kind) for leaf in ('weight', 'bias', 'running_mean', 'running_var')]


def torchvision_entries(num_layers):
  """[(key, shape, kind)] of torchvision's resnet<num_layers> state dict, in its order (no num_batches_tracked)."""
  bottleneck, blocks = STAGES[num_layers]
  expansion = 4 if bottleneck else 1
  entries = [(k, s, 'conv') for k, s in _conv_entries('conv1', 64, 3, 7)] + _bn_entries('bn1', 64)
  in_c = 64
  for stage, (planes, num_blocks) in enumerate(zip(WIDTHS, blocks), start=1):
    for b in range(num_blocks):
      p = f'layer{stage}.{b}'
      if bottleneck:
        convs = [(planes, in_c, 1), (planes, planes, 3), (planes * expansion, planes, 1)]
      else:
        convs = [(planes, in_c, 3), (planes, planes, 3)]
      for i, (o, c, k) in enumerate(convs, start=1):
        entries += [(key, s, 'conv') for key, s in _conv_entries(f'{p}.conv{i}', o, c, k)]
        entries += _bn_entries(f'{p}.bn{i}', o, last_in_block=i == len(convs))
      stride = 2 if stage > 1 and b == 0 else 1
      if stride != 1 or in_c != planes * expansion:
        entries += [(key, s, 'conv') for key, s in _conv_entries(f'{p}.downsample.0', planes * expansion, in_c, 1)]
        entries += _bn_entries(f'{p}.downsample.1', planes * expansion)
      in_c = planes * expansion
  entries += [('fc.weight', (1000, in_c), 'fc'), ('fc.bias', (1000,), 'fc')]
  return entries


def _value(rng, key, shape, kind):
  leaf = key.rsplit('.', 1)[1]
  if kind == 'conv':  # He-normal: keeps activations O(1) through the trunk.
    fan_in = shape[1] * shape[2] * shape[3]
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
  if kind == 'fc':
    return rng.standard_normal(shape) * 0.01
  if leaf == 'weight':  # The residual branch's last BN is small, so blocks do not blow up.
    return rng.uniform(0.1, 0.3, shape) if kind == 'bn_last' else rng.uniform(0.5, 1.0, shape)
  if leaf == 'bias':
    return rng.standard_normal(shape) * 0.1
  if leaf == 'running_mean':
    return rng.standard_normal(shape) * 0.1
  return rng.uniform(0.5, 2.0, shape)  # running_var


def torchvision_state_dict(num_layers, num_batches_tracked=None):
  """Seeded torchvision-layout ResNet state dict {key: float32 array} (numpy only, no torch).

  Args:
    num_layers: 18, 34 or 50 (seed `SEEDS.get(num_layers, num_layers)`).
    num_batches_tracked: None leaves the BatchNorm counters out (like old
      torchvision files); an int adds them as int64 scalars after each running_var.
  """
  rng = np.random.RandomState(SEEDS.get(num_layers, num_layers))
  state_dict = collections.OrderedDict()
  for key, shape, kind in torchvision_entries(num_layers):
    state_dict[key] = _value(rng, key, shape, kind).astype(np.float32)
    if key.endswith('running_var') and num_batches_tracked is not None:
      state_dict[key[:-len('running_var')] + 'num_batches_tracked'] = np.asarray(num_batches_tracked, np.int64)
  return state_dict


def input_images(seed=7, count=1):
  """`count` NHWC float32 images in [0, 1] of IMAGE_SHAPE."""
  rng = np.random.RandomState(seed)
  return [rng.uniform(0.0, 1.0, IMAGE_SHAPE).astype(np.float32) for _ in range(count)]


# --------------------------------------------------------------------------- torch side (generator only)
def _torch_modules():
  """torchvision's ResNet written in plain torch (same attribute names, eval-mode forward)."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  def conv(in_c, out_c, k, stride=1):
    return nn.Conv2d(in_c, out_c, k, stride=stride, padding=k // 2, bias=False)

  class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_c, planes, stride, downsample):
      super().__init__()
      self.conv1, self.bn1 = conv(in_c, planes, 3, stride), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = conv(planes, planes, 3), nn.BatchNorm2d(planes)
      self.downsample = downsample

    def forward(self, x):
      out = torch.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      shortcut = x if self.downsample is None else self.downsample(x)
      return torch.relu(out + shortcut)

  class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_c, planes, stride, downsample):
      super().__init__()
      self.conv1, self.bn1 = conv(in_c, planes, 1), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)  # stride on the 3×3
      self.conv3, self.bn3 = conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
      self.downsample = downsample

    def forward(self, x):
      out = torch.relu(self.bn1(self.conv1(x)))
      out = torch.relu(self.bn2(self.conv2(out)))
      out = self.bn3(self.conv3(out))
      shortcut = x if self.downsample is None else self.downsample(x)
      return torch.relu(out + shortcut)

  class ResNet(nn.Module):

    def __init__(self, num_layers, in_channels=3):
      super().__init__()
      bottleneck, blocks = STAGES[num_layers]
      block = Bottleneck if bottleneck else BasicBlock
      self.conv1, self.bn1 = conv(in_channels, 64, 7, 2), nn.BatchNorm2d(64)
      self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
      in_c = 64
      for stage, (planes, num_blocks) in enumerate(zip(WIDTHS, blocks), start=1):
        layer = []
        for b in range(num_blocks):
          stride = 2 if stage > 1 and b == 0 else 1
          downsample = None
          if stride != 1 or in_c != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(in_c, planes * block.expansion, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
          layer.append(block(in_c, planes, stride, downsample))
          in_c = planes * block.expansion
        setattr(self, f'layer{stage}', nn.Sequential(*layer))
      self.fc = nn.Linear(in_c, 1000)

    def encoder_features(self, rgb):
      """The reference ResnetEncoder.forward: normalise, then [f0, ..., f4]."""
      x = (rgb - 0.45) / 0.225
      features = [torch.relu(self.bn1(self.conv1(x)))]
      x = self.maxpool(features[0])
      for stage in range(1, 5):
        x = getattr(self, f'layer{stage}')(x)
        features.append(x)
      return features

  return torch, ResNet


def _features(torch, model, images_nhwc):
  x = torch.from_numpy(np.concatenate(images_nhwc, axis=-1)).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    return {f'f{i}': f.permute(0, 2, 3, 1).numpy().astype(np.float32)
            for i, f in enumerate(model.encoder_features(x))}


def compute_fixtures():
  """{file name: {array name: array}} computed with torch."""
  torch, ResNet = _torch_modules()
  torch.set_num_threads(1)
  torch.backends.mkldnn.enabled = False  # Plain float32 kernels: steadier numbers across machines.
  target, context = input_images(count=2)
  out = {}
  for num_layers in (18, 50):
    model = ResNet(num_layers).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in torchvision_state_dict(num_layers).items()},
                          strict=True)
    out[f'resnet{num_layers}.npz'] = dict(input=target, **_features(torch, model, [target]))
  # The reference's multi-image first conv: repeat the ImageNet kernel per image, divide by the count.
  state_dict = {k: torch.from_numpy(v) for k, v in torchvision_state_dict(18).items()}
  state_dict['conv1.weight'] = torch.cat([state_dict['conv1.weight']] * 2, 1) / 2
  pose = ResNet(18, in_channels=6).eval()
  pose.load_state_dict(state_dict, strict=True)
  out['resnet18_pose.npz'] = dict(target=target, context=context, **_features(torch, pose, [target, context]))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--check', action='store_true', help='compare with the vendored files, write nothing')
  args = parser.parse_args()
  fixtures = compute_fixtures()
  for name, arrays in fixtures.items():
    path = FIXTURE_DIR / name
    if args.check:
      with np.load(path) as old:
        worst = max(float(np.max(np.abs(old[k] - v))) for k, v in arrays.items())
      print(f'{name}: max |difference| {worst:.3g}')
      continue
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f'wrote {path} ({path.stat().st_size} bytes): '
          + ', '.join(f'{k} {v.shape} max|x| {np.max(np.abs(v)):.3g}' for k, v in arrays.items()))


if __name__ == '__main__':
  main()
