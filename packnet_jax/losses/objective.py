"""The training objective of the reference's three SfM models (docs/reference.md §4).

`sfm_loss(inv_depths, poses, batch, options)` combines the losses of this package as
`LossOptions.model` says:
  SelfSupModel  photometric + smoothness on the un-jittered images;
  SemiSupModel  (1 − w)·self-supervised + w·supervised, w = supervised_loss_weight;
  VelSupModel   self-supervised + velocity_loss_weight · velocity loss.

It takes the networks' outputs as arrays and plain options (flags and weights), never a
config object or a Flax module.
"""
import dataclasses

import jax.numpy as jnp

from packnet_jax.geometry.depth import depth2inv
from packnet_jax.geometry.pose import invert_pose
from packnet_jax.losses.photometric import multiview_photometric_loss
from packnet_jax.losses.reprojected_distance import reprojected_distance_loss
from packnet_jax.losses.supervised import supervised_loss
from packnet_jax.losses.velocity import velocity_loss
from packnet_jax.utils.dtypes import param_dtype

MODELS = ('SelfSupModel', 'SemiSupModel', 'VelSupModel')
REPROJECTED_METHODS = ('reprojected', 'sparse-reprojected')


@dataclasses.dataclass(frozen=True)
class LossOptions:
  """Loss flags and weights (the reference's `model.loss` node, plus the model name)."""
  model: str = 'SelfSupModel'
  num_scales: int = 4
  ssim_loss_weight: float = 0.85
  smooth_loss_weight: float = 0.001
  C1: float = 1e-4
  C2: float = 9e-4
  photometric_reduce_op: str = 'min'
  clip_loss: float = 0.0
  padding_mode: str = 'zeros'
  automask_loss: bool = True
  supervised_method: str = 'sparse-l1'
  supervised_num_scales: int = 4
  supervised_loss_weight: float = 0.9
  velocity_loss_weight: float = 0.1

  def __post_init__(self):
    if self.model not in MODELS:
      raise ValueError(f'model: expected one of {MODELS}, got {self.model!r}')

  @classmethod
  def from_dict(cls, model, loss):
    """Builds options from a model name and a loss mapping; unused keys are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(model=model, **{k: v for k, v in dict(loss).items() if k in names})

  @property
  def needs_pose_gt(self):
    return self.model == 'VelSupModel'

  @property
  def needs_pose_net(self):
    return not (self.model == 'SemiSupModel' and self.supervised_loss_weight >= 1.0)


def _context_list(x):
  return [x[:, j] for j in range(x.shape[1])]


def self_supervised_loss(inv_depths, poses, batch, opts):
  """Photometric + smoothness loss on the un-jittered target and contexts."""
  image = batch.get('rgb_original', batch['rgb'])
  contexts = batch.get('rgb_context_original', batch['rgb_context'])
  K = batch['intrinsics']
  return multiview_photometric_loss(
      image, _context_list(contexts), inv_depths, K, K, _context_list(poses),
      num_scales=opts.num_scales, ssim_loss_weight=opts.ssim_loss_weight,
      smooth_loss_weight=opts.smooth_loss_weight, C1=opts.C1, C2=opts.C2,
      photometric_reduce_op=opts.photometric_reduce_op, clip_loss=opts.clip_loss,
      padding_mode=opts.padding_mode, automask_loss=opts.automask_loss)


def supervised_term(inv_depths, poses, batch, opts):
  """Supervised loss against `batch['depth']` (sparse L1 etc., or reprojected distance)."""
  gt_inv_depth = depth2inv(batch['depth'])
  if opts.supervised_method in REPROJECTED_METHODS:
    # The motion of the first context gives the second view the distances are measured in. The
    # loss takes T_ts (context → target) and moves points by its inverse; our poses are
    # target → context (docs/reference.md §3.1), so pass their inverse.
    return reprojected_distance_loss(inv_depths, gt_inv_depth, batch['intrinsics'],
                                     invert_pose(poses[:, 0]),
                                     num_scales=opts.supervised_num_scales)
  return supervised_loss(inv_depths, gt_inv_depth, method=opts.supervised_method,
                         num_scales=opts.supervised_num_scales)


def sfm_loss(inv_depths, poses, batch, opts):
  """The training objective of `opts.model`.

  Args:
    inv_depths: list of [B,h,w,1] predicted inverse depths (full resolution first).
    poses: [B,N,4,4] predicted target → context poses (None if not needed).
    batch: dict with rgb, rgb_context, intrinsics (and rgb_original,
      rgb_context_original; depth for SemiSupModel; pose_context for VelSupModel).
    opts: LossOptions.

  Returns:
    (loss scalar, metrics dict of scalars), float32, or float64 when the inverse depths
    are float64 (compute dtype 'float64'). The metrics keep the
    reference's names: 'photometric_loss' (which, as in the reference, holds the
    photometric + smoothness total), 'smoothness_loss', 'supervised_loss',
    'velocity_loss'.
  """
  dtype = param_dtype(inv_depths[0].dtype)
  metrics = {}
  loss = jnp.zeros((), dtype)
  self_weight = 1.0
  if opts.model == 'SemiSupModel':
    w = opts.supervised_loss_weight
    if 'depth' not in batch:
      raise ValueError('batch: SemiSupModel needs key depth (set the train depth_type)')
    sup = supervised_term(inv_depths, poses, batch, opts)
    metrics['supervised_loss'] = sup
    loss = loss + w * sup
    self_weight = 1.0 - w
  if self_weight > 0.0:
    photo, photo_metrics = self_supervised_loss(inv_depths, poses, batch, opts)
    metrics.update(photo_metrics)
    loss = loss + self_weight * jnp.reshape(photo, ())
  if opts.model == 'VelSupModel':
    if 'pose_context' not in batch:
      raise ValueError('batch: VelSupModel needs key pose_context (GT poses of the contexts)')
    vel = velocity_loss(poses, batch['pose_context'])
    metrics['velocity_loss'] = vel
    loss = loss + opts.velocity_loss_weight * vel
  metrics = {k: jnp.asarray(v, dtype).reshape(()) for k, v in metrics.items()}
  return loss.astype(dtype), metrics
