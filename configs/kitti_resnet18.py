"""DepthResNet18 + PoseResNet18 self-supervised on KITTI from ImageNet (the ResNet18_MR_selfsup_K row).

  python -m packnet_jax.main --config=configs/kitti_resnet18.py --workdir=/tmp/packnet_r18 \
      --config.datasets.train.path=/data/datasets/KITTI_raw \
      --config.model.depth_net.pretrained_encoder=/data/weights/resnet18-f37072fd.pth \
      --config.model.pose_net.pretrained_encoder=/data/weights/resnet18-f37072fd.pth

Both networks use version '18pt', as the reference's ResNet configs do
(overfit_kitti.yaml / overfit_ddad.yaml: DepthResNet and PoseResNet '18pt'),
so their ResNet-18 encoders start from torchvision's ImageNet weights, the
file `resnet18-f37072fd.pth` from
https://download.pytorch.org/models/resnet18-f37072fd.pth. Nothing is
downloaded here: fetch that file yourself and pass it (or the directory
`python -m packnet_jax.convert --checkpoint resnet18-f37072fd.pth --output DIR`
makes from it) to both `pretrained_encoder` keys. Without it the run stops at
start with one line naming the file; with `model.checkpoint_path` (e.g. the
released ResNet18_MR_selfsup_K.ckpt) or a network's own checkpoint_path the
checkpoint supplies the weights instead. PoseResNet's 6-channel first conv is
the ImageNet conv repeated twice and halved, as the reference builds it.

Same data and optimiser as configs/kitti.py; only the networks differ.
"""
from configs import kitti


def get_config():
  """KITTI self-supervised DepthResNet '18pt' + PoseResNet '18pt' (ImageNet encoders)."""
  config = kitti.get_config()
  config.name = 'kitti_resnet18_selfsup'
  config.model.depth_net.name = 'DepthResNet'
  config.model.depth_net.version = '18pt'
  config.model.pose_net.name = 'PoseResNet'
  config.model.pose_net.version = '18pt'
  return config
