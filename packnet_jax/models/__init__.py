"""packnet_jax.models: the PackNet-SfM depth and pose networks as Flax linen modules (NHWC).

Depth nets: __call__(rgb [B,H,W,3], train=False) → list of 4 [B,h,w,1] inverse
depths in train mode (full resolution first), [B,H,W,1] in eval mode.
Pose nets: __call__(target [B,H,W,3], contexts [B,N,H,W,3], train=False) → [B,N,6].
Submodule names mirror the reference's torch module names (see
packnet_jax.convert.keymap).
"""
from packnet_jax.models.depth_resnet import DepthResNet
from packnet_jax.models.packnet import PackNet01, PackNetSlim01
from packnet_jax.models.pose_net import PoseNet
from packnet_jax.models.pose_resnet import PoseResNet
from packnet_jax.models.registry import DEPTH_NETS, POSE_NETS, build_depth_net, build_pose_net

__all__ = ['DepthResNet', 'PackNet01', 'PackNetSlim01', 'PoseNet', 'PoseResNet', 'DEPTH_NETS', 'POSE_NETS',
           'build_depth_net', 'build_pose_net']
