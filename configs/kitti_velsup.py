"""PackNet01 velocity-supervised (scale-aware) on KITTI.

  python -m packnet_jax.main --config=configs/kitti_velsup.py --workdir=/tmp/packnet_velsup \
      --config.datasets.train.path=/data/datasets/KITTI_raw \
      --config.model.checkpoint_path=/ckpts/PackNet01_MR_selfsup_CS.ckpt

VelSupModel: self-supervised loss + 0.1 × velocity loss (|‖t_pred‖ − ‖t_gt‖| on the
context poses), which gives metric scale; the train split needs GT poses (oxts).
Evaluated without median scaling as well (the `depth` metrics).
"""
from configs import kitti


def get_config():
  """KITTI velocity-supervised PackNet01 + PoseNet."""
  config = kitti.get_config()
  config.name = 'kitti_packnet01_velsup'
  config.model.name = 'VelSupModel'
  config.model.loss.velocity_loss_weight = 0.1
  return config
