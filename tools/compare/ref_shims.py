"""Stand-ins that let the reference's data and training code run on a modern torch-only install.

The reference (PackNet-SfM at de53b31) was written for torchvision 0.x, Pillow < 10 and numpy < 1.24.
None of its files is edited; instead, before it is imported:

* torchvision: tools/torch_reference.py's ResNet stand-in (the networks), plus the five
  `torchvision.transforms` pieces its datasets use: Resize and ToTensor (what torchvision does for
  PIL images and numpy arrays), Lambda, Compose, and `functional.adjust_{brightness,contrast,
  saturation,hue}` from tests/lib/pil_jitter.py: our own PIL implementation of torchvision's colour
  jitter, proven equal to it (and to the port's device jitter) in tests/test_jitter_exact.py.
* Pillow 10 dropped `Image.ANTIALIAS` (the reference's resize default): it is LANCZOS, the same filter.
* numpy 1.24 dropped `np.float` (the reference's PNG depth reader): it was the builtin float.
* Horovod: `packnet_sfm.utils.reduce.reduce_value` (an allreduce) is the identity in one process.
"""
import os
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _transforms_module():
  """torchvision.transforms with the pieces the reference's augmentations and depth utils call."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(REPO, 'tests'))
  from lib import pil_jitter  # pylint: disable=import-outside-toplevel
  sys.path.remove(os.path.join(REPO, 'tests'))

  class Resize:
    def __init__(self, size, interpolation=None):
      self.size, self.interpolation = tuple(size), interpolation

    def __call__(self, image):  # torchvision on a PIL image with an (h, w) size: PIL's resize
      return image.resize(self.size[::-1], self.interpolation)

  class ToTensor:
    def __call__(self, pic):
      if isinstance(pic, np.ndarray):  # HxW(xC) array: CHW, uint8 scaled to [0, 1], other types kept
        array = pic[:, :, None] if pic.ndim == 2 else pic
        tensor = torch.from_numpy(array.transpose((2, 0, 1)).copy())
        return tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor
      array = np.asarray(pic.convert('RGB') if pic.mode != 'RGB' else pic, np.uint8)
      return torch.from_numpy(array.transpose((2, 0, 1)).copy()).float().div(255)

  class Lambda:
    def __init__(self, fn):
      self.fn = fn

    def __call__(self, x):
      return self.fn(x)

  class Compose:
    def __init__(self, transforms):
      self.transforms = list(transforms)

    def __call__(self, x):
      for t in self.transforms:
        x = t(x)
      return x

  functional = types.ModuleType('torchvision.transforms.functional')
  functional.adjust_brightness = pil_jitter.OPS['brightness']
  functional.adjust_contrast = pil_jitter.OPS['contrast']
  functional.adjust_saturation = pil_jitter.OPS['saturation']
  functional.adjust_hue = pil_jitter.adjust_hue
  module = types.ModuleType('torchvision.transforms')
  module.Resize, module.ToTensor, module.Lambda, module.Compose = Resize, ToTensor, Lambda, Compose
  module.functional = functional
  return module, functional


def install():
  """Puts the stand-ins in place; call before torch_reference.import_reference."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if not hasattr(Image, 'ANTIALIAS'):
    Image.ANTIALIAS = Image.Resampling.LANCZOS
  if 'float' not in np.__dict__:
    np.float = float
  sys.path.insert(0, os.path.join(REPO, 'tools'))
  import torch_reference  # pylint: disable=import-outside-toplevel
  try:
    import torchvision  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    modules = torch_reference._torchvision_stand_in()  # pylint: disable=protected-access
    transforms, functional = _transforms_module()
    modules['torchvision'].transforms = transforms
    modules.update({'torchvision.transforms': transforms, 'torchvision.transforms.functional': functional})
    sys.modules.update(modules)
  return torch_reference


def patch_single_process_reduce():
  """Horovod's allreduce as the identity (one process), after the reference is importable."""
  from packnet_sfm.utils import reduce  # pylint: disable=import-outside-toplevel
  reduce.reduce_value = lambda value, average, name: value
