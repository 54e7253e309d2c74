"""PackNet01 semi-supervised on KITTI: photometric + reprojected-distance loss.

  python -m packnet_jax.main --config=configs/kitti_semisup.py --workdir=/tmp/packnet_semisup \
      --config.datasets.train.path=/data/datasets/KITTI_raw \
      --config.model.checkpoint_path=/ckpts/PackNet01_MR_selfsup_CS.ckpt

SemiSupModel: loss = (1 - w)·self-supervised + w·supervised with w = 0.9 (the
reference's `supervised_loss_weight`); the supervised term is the reprojected
distance between predicted and (sparse lidar) ground-truth depth, at 4 scales.
Training needs depth for the train split too (velodyne).
"""
from configs import kitti


def get_config():
  """KITTI semi-supervised PackNet01 + PoseNet."""
  config = kitti.get_config()
  config.name = 'kitti_packnet01_semisup'
  config.model.name = 'SemiSupModel'
  config.model.loss.supervised_method = 'reprojected'
  config.model.loss.supervised_loss_weight = 0.9
  return config
