"""PackNet01 self-supervised on KITTI raw (the reference's train_kitti.yaml).

  python -m packnet_jax.main --config=configs/kitti.py --workdir=/tmp/packnet_kitti \
      --config.datasets.train.path=/data/datasets/KITTI_raw

192×640, batch 4 per device, Adam 2e-4 for both networks, StepLR 30 epochs / 0.5,
Eigen–Zhou train split repeated twice, velodyne depth, garg crop. Validation reports
the Eigen val and Eigen test splits separately, under the reference's prefixes
(`KITTI_raw-eigen_val_files-velodyne`, `KITTI_raw-eigen_test_files-velodyne`).
"""
from configs import default


def get_config():
  """KITTI self-supervised PackNet01 + PoseNet."""
  config = default.get_config()
  config.name = 'kitti_packnet01_selfsup'
  config.model.name = 'SelfSupModel'
  config.model.depth_net.name = 'PackNet01'
  config.model.depth_net.version = '1A'
  config.model.pose_net.name = 'PoseNet'
  config.model.params.crop = 'garg'
  config.optim.scheduler.step_size = 30
  config.datasets.augmentation.image_shape = (192, 640)
  train = config.datasets.train
  train.batch_size = 4
  train.repeat = 2
  for split in (train, config.datasets.validation, config.datasets.test):
    split.dataset = 'KITTI'
    split.path = '/data/datasets/KITTI_raw'
    split.depth_type = 'velodyne'
  train.split = 'data_splits/eigen_zhou_files.txt'
  config.datasets.validation.split = ['data_splits/eigen_val_files.txt', 'data_splits/eigen_test_files.txt']
  config.datasets.test.split = 'data_splits/eigen_test_files.txt'
  return config
