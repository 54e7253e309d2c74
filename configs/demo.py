"""Demo: self-supervised DepthResNet18 + PoseNet on the built-in synthetic street.

  python tools/make_synthetic_kitti.py --output /tmp/kitti_synth && \
  python -m packnet_jax.main --config=configs/demo.py:/tmp/kitti_synth --workdir=/tmp/packnet_demo

The text after `:` is the data folder (default /tmp/kitti_synth).

A few minutes on 2 CPU cores: 64×192 images, batch 4, the reference's
augmentation (colour jitter 0.2/0.2/0.2/0.05, left-right flips with probability
0.5) and initialisation, Adam 2e-4 (the reference's rate) without decay, 80
steps. Evaluates on the synthetic validation frames (dense GT) at the end and
prints median-scaled AbsRel next to the constant-depth baseline (median GT depth
everywhere); a run that collapses to a constant depth says so.
"""
from configs import default

DATA = '/tmp/kitti_synth'


def get_config(data=DATA):
  """Synthetic-scene demo on the tree written by tools/make_synthetic_kitti.py into `data`."""
  config = default.get_config()
  config.name = 'demo_synthetic'
  config.model.depth_net.name = 'DepthResNet'
  config.model.depth_net.version = '18'
  config.model.pose_net.name = 'PoseNet'
  config.model.params.max_depth = 80.0
  config.optim.scheduler.step_size = 1000   # no decay within the demo
  config.datasets.augmentation.image_shape = (64, 192)
  config.datasets.train.batch_size = 4
  config.datasets.train.repeat = 1
  for split, name in ((config.datasets.train, 'train'), (config.datasets.validation, 'val'),
                      (config.datasets.test, 'test')):
    split.dataset = 'KITTI'
    split.path = data or DATA
    split.split = f'splits/{name}.txt'
  config.datasets.validation.depth_type = 'groundtruth'
  config.datasets.test.depth_type = 'groundtruth'
  config.datasets.validation.batch_size = 4
  config.arch.max_epochs = 20
  config.arch.max_steps = 80
  config.checkpoint.every_steps = 40
  config.checkpoint.every_epochs = 0
  config.checkpoint.keep = 2
  config.logging.log_every_steps = 10
  config.logging.image_every_steps = 40
  config.logging.progress_every_steps = 20
  config.eval.schedule = 'steps'
  config.eval.every_steps = 40
  return config
