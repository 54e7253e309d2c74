"""Self-supervised fine-tuning on your own video: a folder of consecutive frames.

  python -m packnet_jax.main --config=configs/folder.py --workdir=/tmp/packnet_folder \
      --config.datasets.train.path=/path/to/frames \
      --config.model.checkpoint_path=/ckpts/PackNet01_MR_selfsup_K.ckpt

Frames are read in file-name order (or decoded from a video file); the previous and
next frame are the context. Without ground truth there is no validation, and the
camera intrinsics come from the reader's default for image folders.
"""
from configs import default


def get_config():
  """Image-folder self-supervised PackNet01 + PoseNet."""
  config = default.get_config()
  config.name = 'folder_selfsup'
  config.model.depth_net.name = 'PackNet01'
  config.model.depth_net.version = '1A'
  config.model.pose_net.name = 'PoseNet'
  config.datasets.augmentation.image_shape = (192, 640)
  config.datasets.train.batch_size = 4
  config.datasets.train.dataset = 'Image'
  config.datasets.train.path = '/path/to/frames'
  config.eval.schedule = 'off'   # no labelled validation split
  config.arch.max_epochs = 20
  return config
