"""PackNet01 self-supervised on DDAD, front camera (the reference's train_ddad.yaml).

  python -m packnet_jax.main --config=configs/ddad.py --workdir=/tmp/packnet_ddad \
      --config.datasets.train.path=/data/datasets/DDAD/ddad.json

384×640, batch 2 per device, Adam 9e-5, StepLR 30 / 0.5, max depth 200 m, no crop.
"""
from configs import default


def get_config():
  """DDAD self-supervised PackNet01 + PoseNet."""
  config = default.get_config()
  config.name = 'ddad_packnet01_selfsup'
  config.model.depth_net.name = 'PackNet01'
  config.model.depth_net.version = '1A'
  config.model.pose_net.name = 'PoseNet'
  config.model.params.max_depth = 200.0
  config.optim.depth.lr = 9e-5
  config.optim.pose.lr = 9e-5
  config.optim.scheduler.step_size = 30
  config.datasets.augmentation.image_shape = (384, 640)
  config.datasets.train.batch_size = 2
  config.datasets.train.repeat = 5
  for name, split in (('train', config.datasets.train),
                      ('val', config.datasets.validation),
                      ('val', config.datasets.test)):
    split.dataset = 'DGP'
    split.path = '/data/datasets/DDAD/ddad.json'
    split.split = name
    split.depth_type = 'lidar'
    split.cameras = ('camera_01',)
  return config
