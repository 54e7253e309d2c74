"""PackNet01 self-supervised on DDAD, front camera (the reference's train_ddad.yaml).

  python -m packnet_jax.main --config=configs/ddad.py --workdir=/tmp/packnet_ddad \
      --config.datasets.train.path=/data/datasets/DDAD/ddad.json

384×640, batch 2 per device, Adam 9e-5, StepLR 30 / 0.5, max depth 200 m, no crop;
train split repeated 5 times with one frame of context each side; validation and
test on DDAD's 'val' split with lidar GT.

Several cameras: `--config.datasets.train.cameras="('camera_01','camera_05')"` (and
the same for validation/test). Every (frame, camera) pair is one example, in the
order the dataset's samples list the cameras; `python -m packnet_jax.eval` then
reports each camera and the overall numbers. (The reference instead stacks the
cameras of one frame into a batch and then needs batch size 1.)

On a synthetic scene in the DDAD layout (two cameras, no download):

  python tools/make_synthetic_ddad.py --output /tmp/ddad_synth && \
  python -m packnet_jax.main --config=configs/ddad.py --workdir=/tmp/packnet_ddad_synth \
      --config.datasets.train.path=/tmp/ddad_synth/ddad.json \
      --config.datasets.validation.path=/tmp/ddad_synth/ddad.json \
      --config.datasets.test.path=/tmp/ddad_synth/ddad.json \
      --config.datasets.train.cameras="('camera_01','camera_05')" \
      --config.datasets.validation.cameras="('camera_01','camera_05')" \
      --config.datasets.augmentation.image_shape="(64,96)" --config.arch.max_steps=200
"""
from configs import default


def get_config():
  """DDAD self-supervised PackNet01 + PoseNet."""
  config = default.get_config()
  config.name = 'ddad_packnet01_selfsup'
  config.model.depth_net.name = 'PackNet01'
  config.model.depth_net.version = '1A'
  config.model.pose_net.name = 'PoseNet'
  config.model.params.crop = ''
  config.model.params.min_depth = 0.0
  config.model.params.max_depth = 200.0
  config.optim.depth.lr = 9e-5
  config.optim.pose.lr = 9e-5
  config.optim.scheduler.step_size = 30
  config.optim.scheduler.gamma = 0.5
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
