"""Over-fit the tiny DDAD subset (the reference's overfit_ddad.yaml).

  python -m packnet_jax.main --config=configs/overfit_ddad.py --workdir=/tmp/packnet_overfit_ddad \
      --config.datasets.train.path=/data/datasets/DDAD_tiny/ddad_tiny.json

DepthResNet18 + PoseResNet18 at 384×640, batch 4, Adam 1e-4 (StepLR 30 / 0.5),
one epoch of the 'train' split of DDAD_tiny repeated 500 times, front camera,
lidar GT, no crop, max depth 200 m; validation and test on the same 'train' split.
The reference starts both ResNets from ImageNet ('18pt'); as in overfit_kitti.py
the version here is '18' (random init) so that it runs without a download; see
overfit_kitti.py for the '18pt' overrides and torchvision's resnet18-f37072fd.pth.
"""
from configs import overfit_kitti


def get_config():
  """Tiny-DDAD over-fitting run."""
  config = overfit_kitti.get_config()
  config.name = 'overfit_ddad'
  config.model.params.crop = ''
  config.model.params.min_depth = 0.0
  config.model.params.max_depth = 200.0
  config.optim.depth.lr = 1e-4
  config.optim.pose.lr = 1e-4
  config.optim.scheduler.step_size = 30
  config.optim.scheduler.gamma = 0.5
  config.datasets.augmentation.image_shape = (384, 640)
  config.datasets.train.batch_size = 4
  config.datasets.train.repeat = 500
  for split in (config.datasets.train, config.datasets.validation, config.datasets.test):
    split.dataset = 'DGP'
    split.path = '/data/datasets/DDAD_tiny/ddad_tiny.json'
    split.split = 'train'
    split.depth_type = 'lidar'
    split.cameras = ('camera_01',)
  return config
