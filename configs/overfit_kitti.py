"""Over-fit the tiny KITTI subset (the reference's overfit_kitti.yaml).

  python -m packnet_jax.main --config=configs/overfit_kitti.py --workdir=/tmp/packnet_overfit_kitti \
      --config.datasets.train.path=/data/datasets/KITTI_tiny

DepthResNet18 + PoseResNet18, one epoch of the 'kitti_tiny.txt' split repeated 1000
times, batch 6, garg crop. The reference starts from ImageNet weights ('18pt'); this
file keeps '18' so that it runs without any download. For the reference's start, add
--config.model.depth_net.version=18pt --config.model.pose_net.version=18pt and pass
torchvision's resnet18-f37072fd.pth as both networks' pretrained_encoder.
"""
from configs import default


def get_config():
  """Tiny-KITTI over-fitting run."""
  config = default.get_config()
  config.name = 'overfit_kitti'
  config.arch.max_epochs = 1
  config.model.depth_net.name = 'DepthResNet'
  config.model.depth_net.version = '18'
  config.model.pose_net.name = 'PoseResNet'
  config.model.pose_net.version = '18'
  config.model.params.crop = 'garg'
  config.optim.scheduler.step_size = 30
  config.datasets.augmentation.image_shape = (192, 640)
  config.datasets.train.batch_size = 6
  config.datasets.train.repeat = 1000
  for split in (config.datasets.train, config.datasets.validation, config.datasets.test):
    split.dataset = 'KITTI'
    split.path = '/data/datasets/KITTI_tiny'
    split.split = 'kitti_tiny.txt'
    split.depth_type = 'velodyne'
  return config
