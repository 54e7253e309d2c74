"""DepthResNet18 + PoseNet self-supervised on KITTI (ResNet18_MR_selfsup_K recipe).

  python -m packnet_jax.main --config=configs/kitti_resnet18.py --workdir=/tmp/packnet_r18 \
      --config.datasets.train.path=/data/datasets/KITTI_raw

Same data and optimiser as configs/kitti.py, only the depth network differs.
"""
from configs import kitti


def get_config():
  """KITTI self-supervised DepthResNet18 + PoseNet."""
  config = kitti.get_config()
  config.name = 'kitti_resnet18_selfsup'
  config.model.depth_net.name = 'DepthResNet'
  config.model.depth_net.version = '18'
  return config
