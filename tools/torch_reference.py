"""Imports the PyTorch PackNet-SfM reference from a user's checkout, for benchmarks only.

The reference (TRI-ML/packnet-sfm) is never vendored: the user points
`--torch_source DIR` (or the environment variable PACKNET_SFM_SOURCE) at a
checkout. Its import chain needs packages that a modern torch-only install
lacks (torchvision, yacs, cv2, matplotlib); none of them matters for a
forward/backward timing, so small stand-ins are put into `sys.modules` when the
real package is missing, and the reference's files are not touched
(docs/reference.md §0). The one run-time break on CPU, `Camera.to(-1)` in the photometric
loss, is patched on the imported class.

torch is imported by the functions here, never at module import, so
tools/benchmark.py loads without torch.
"""
import importlib
import os
import pathlib
import sys
import types

ENV_VAR = 'PACKNET_SFM_SOURCE'


def source_dir(path=None):
  """The checkout to import from: `path`, else $PACKNET_SFM_SOURCE; a ValueError if unusable."""
  path = path or os.environ.get(ENV_VAR, '')
  if not path:
    raise ValueError(f'--torch_source: no packnet-sfm checkout given (flag or ${ENV_VAR})')
  root = pathlib.Path(path)
  if not (root / 'packnet_sfm' / 'networks').is_dir():
    raise ValueError(f'--torch_source: {root}: expected a packnet-sfm checkout (with packnet_sfm/networks/)')
  return root


def _missing(name):
  try:
    importlib.import_module(name)
    return False
  except ImportError:
    return True


def _torchvision_stand_in():
  """torchvision.models with the ResNet pieces the reference subclasses (no pretrained weights).

  Its ResNet initialises itself as torchvision's constructor does (Conv2d weights
  kaiming_normal_ with fan_out and the ReLU gain, BatchNorm 1 / 0, `fc` left at
  torch's default), so the reference's from-scratch DepthResNet starts from the
  same distributions as with the real torchvision (tools/make_init_statistics.py).
  """
  import torch.nn as nn  # pylint: disable=import-outside-toplevel

  def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)

  class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1, self.bn1 = conv(inplanes, planes, 3, stride), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = conv(planes, planes, 3), nn.BatchNorm2d(planes)
      self.relu, self.downsample = nn.ReLU(inplace=True), downsample

    def forward(self, x):
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      return self.relu(out + (x if self.downsample is None else self.downsample(x)))

  class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1, self.bn1 = conv(inplanes, planes, 1), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
      self.conv3, self.bn3 = conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
      self.relu, self.downsample = nn.ReLU(inplace=True), downsample

    def forward(self, x):
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      out = self.bn3(self.conv3(out))
      return self.relu(out + (x if self.downsample is None else self.downsample(x)))

  class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
      super().__init__()
      self.inplanes = 64
      self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
      self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
      for i, planes in enumerate((64, 128, 256, 512)):
        setattr(self, f'layer{i + 1}', self._make_layer(block, planes, layers[i], 1 if i == 0 else 2))
      self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512 * block.expansion, num_classes)
      # torchvision's constructor initialisation (`fc` keeps torch's default Linear one).
      for module in self.modules():
        if isinstance(module, nn.Conv2d):
          nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(module, nn.BatchNorm2d):
          nn.init.ones_(module.weight)
          nn.init.zeros_(module.bias)

    def _make_layer(self, block, planes, blocks, stride=1):
      downsample = None
      if stride != 1 or self.inplanes != planes * block.expansion:
        downsample = nn.Sequential(conv(self.inplanes, planes * block.expansion, 1, stride),
                                   nn.BatchNorm2d(planes * block.expansion))
      stage = [block(self.inplanes, planes, stride, downsample)]
      self.inplanes = planes * block.expansion
      stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
      return nn.Sequential(*stage)

  def factory(block, layers):
    def make(pretrained=False, **unused):
      if pretrained:
        raise ValueError('torch reference: ImageNet weights are not available offline')
      return ResNet(block, layers)
    return make

  resnet = types.ModuleType('torchvision.models.resnet')
  resnet.BasicBlock, resnet.Bottleneck, resnet.ResNet, resnet.model_urls = BasicBlock, Bottleneck, ResNet, {}
  models = types.ModuleType('torchvision.models')
  models.resnet, models.ResNet = resnet, ResNet
  for depth, (block, layers) in {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                                 50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3)),
                                 152: (Bottleneck, (3, 8, 36, 3))}.items():
    setattr(models, f'resnet{depth}', factory(block, layers))
  torchvision = types.ModuleType('torchvision')
  torchvision.models, torchvision.transforms = models, types.ModuleType('torchvision.transforms')
  return {'torchvision': torchvision, 'torchvision.models': models, 'torchvision.models.resnet': resnet,
          'torchvision.transforms': torchvision.transforms}


def _install_stand_ins():
  """Puts stand-ins for the reference's benchmark-irrelevant imports into sys.modules."""
  stand_ins = {}
  if _missing('torchvision'):
    stand_ins.update(_torchvision_stand_in())
  if _missing('yacs'):
    yacs, config = types.ModuleType('yacs'), types.ModuleType('yacs.config')
    config.CfgNode = type('CfgNode', (dict,), {})
    yacs.config = config
    stand_ins.update({'yacs': yacs, 'yacs.config': config})
  if _missing('cv2'):
    stand_ins['cv2'] = types.ModuleType('cv2')  # only used to write images
  try:
    from matplotlib.cm import get_cmap  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    try:  # matplotlib >= 3.9 (requirements-tools.txt) moved get_cmap to the colormap registry
      import matplotlib  # pylint: disable=import-outside-toplevel
      import matplotlib.cm  # pylint: disable=import-outside-toplevel
      matplotlib.cm.get_cmap = lambda name: matplotlib.colormaps[name]
    except ImportError:
      pass
  if 'get_cmap' not in getattr(sys.modules.get('matplotlib.cm'), '__dict__', {}):
    matplotlib, cm = types.ModuleType('matplotlib'), types.ModuleType('matplotlib.cm')
    cm.get_cmap = lambda name: None  # only used to colour images
    matplotlib.cm = cm
    stand_ins.update({'matplotlib': matplotlib, 'matplotlib.cm': cm})
  for name, module in stand_ins.items():
    sys.modules.setdefault(name, module)


_imported_from = []  # the checkout already on sys.path, if any


def import_reference(path=None):
  """Makes `packnet_sfm` importable from the checkout (once); returns the checkout path."""
  if _imported_from and not path:
    return _imported_from[0]
  root = source_dir(path)
  _install_stand_ins()
  if str(root) not in sys.path:
    sys.path.insert(0, str(root))
  camera = importlib.import_module('packnet_sfm.geometry.camera')
  if not getattr(camera.Camera.to, '_cpu_patched', False):
    original = camera.Camera.to

    def to(self, *args, **kwargs):
      # The loss moves cameras to `tensor.get_device()`, which is -1 on CPU.
      args = tuple('cpu' if a == -1 else a for a in args)
      return original(self, *args, **kwargs)
    to._cpu_patched = True  # pylint: disable=protected-access
    camera.Camera.to = to
  _imported_from[:] = [root]
  return root


def build_network(cls, version=None, nb_ref_imgs=2, path=None):
  """A reference network by class name ('PackNet01', 'DepthResNet', 'PoseNet', ...)."""
  import_reference(path)
  kind = 'pose' if cls.startswith('Pose') else 'depth'
  module = importlib.import_module(f'packnet_sfm.networks.{kind}.{cls}')
  if cls == 'PoseNet':
    return getattr(module, cls)(nb_ref_imgs=nb_ref_imgs)
  return getattr(module, cls)(version=version)


def build_selfsup_model(depth_net, pose_net, loss_kwargs, path=None):
  """The reference SelfSupModel around two reference networks (loss options as keyword args)."""
  import_reference(path)
  module = importlib.import_module('packnet_sfm.models.SelfSupModel')
  return module.SelfSupModel(depth_net=depth_net, pose_net=pose_net, **loss_kwargs)
