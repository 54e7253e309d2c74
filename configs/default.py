"""Every configuration key, with the PyTorch reference's defaults (docs/reference.md §7).

Not meant to be trained directly (it names no dataset or network); the experiment
files in this folder import it and override only what differs, e.g.

  python -m packnet_jax.main --config=configs/kitti.py --workdir=/tmp/kitti \
      --config.optim.depth.lr=1e-4 --config.datasets.train.batch_size=2

The returned ConfigDict is locked: an experiment file or a command-line override can only
set keys that exist here, with the same type (ints are accepted for floats, lists for
tuples); ml_collections raises, naming the key, otherwise. `packnet_jax.config_utils`
then checks the values (choices, ranges) and every CLI reports problems in one line.

Layout:
  model       which SfM model (SelfSupModel / SemiSupModel / VelSupModel), its two
              networks, loss parameters and evaluation parameters.
  optim       Adam with one learning rate per network, the StepLR schedule (in
              epochs, as the reference) and optional gradient clipping.
  datasets    augmentation shared by all splits, then train / validation / test.
  arch        seed and length of training.
  train       step-level behaviour (non-finite steps, the collapse report).
  checkpoint  orbax checkpoints in --workdir (periodic, final, keep-last-N and best-K, resume).
  logging     clu metric writers (scalars, images) and progress reports.
  eval        periodic validation.
  distributed multi-host start-up (jax.distributed.initialize).
"""
import ml_collections


class _PerDataset(ml_collections.FieldReference):
  """A key that takes a scalar or a list with one value per dataset (the reference's lists).

  Typed `object` so that a locked config accepts both, from an experiment file, a command
  line (`--config.datasets.train.path=/data/a` or `"['/data/a','/data/b']"`, parsed as a
  Python literal, else kept as text) and a run's config.json; config_utils checks the values.
  Lists are stored as tuples, as ml_collections does for tuple keys, so that a value reads
  back the same from config.json (JSON has no tuples).
  """

  def __init__(self, default):
    super().__init__(default, field_type=object)

  def set(self, value, type_safe=True):
    super().set(_tuples(value), type_safe)


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _split(batch_size, back_context, forward_context, shuffle):
  """Keys shared by the train / validation / test dataset nodes.

  The first six take a scalar or a list (several datasets per split, as the reference):
  one-element lists apply to every dataset, others give one value per dataset.
  """
  return ml_collections.ConfigDict(dict(
      # Reader name: 'KITTI', 'DDAD' or 'Image' (a folder of frames / a video).
      dataset=_PerDataset(''),
      path=_PerDataset(''),            # dataset root
      split=_PerDataset(''),           # split file relative to `path` ('' = every frame)
      depth_type=_PerDataset(''),      # '' (no depth), 'velodyne', 'groundtruth', ...
      input_depth_type=_PerDataset(''),  # depth given to the network as input ('' = none)
      # DDAD camera names: one list for every dataset, or a list of lists (one per dataset).
      cameras=_PerDataset(()),
      batch_size=batch_size,  # per device, as the reference's per-GPU batch
      back_context=back_context,    # frames before the target used as contexts
      forward_context=forward_context,  # frames after the target used as contexts
      shuffle=shuffle,    # shuffle the sample order (train); seeded by arch.seed
      num_logs=5,         # depth images written per evaluation
      # Image / Video datasets: (fx, fy, cx, cy) in pixels; () = the documented default.
      intrinsics=(),
      project_velodyne=False,  # KITTI: project raw velodyne scans when proj_depth is absent
      on_error='raise',   # a sample that cannot be read: 'raise' or 'skip' (logged)
      tfds_data_dir='',   # read prepared TFDS records from here instead of the raw tree
      tfds_config='',     # TFDS builder config name of those records ('' = the builder's default)
  ))


def get_config():
  """Returns the default ConfigDict (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.name = ''
  # Dtype of network activations ('float32' or 'bfloat16'; losses float32), or 'float64' (CPU):
  # everything float64, to tell float32 rounding noise from error (docs/reference.md).
  config.compute_dtype = 'float32'

  config.arch = ml_collections.ConfigDict(dict(
      seed=42,
      max_epochs=50,
      validate_first=False,
      # 0: one epoch = the train split divided by the global batch (reference).
      steps_per_epoch=0,
      # 0: max_epochs * steps_per_epoch; > 0 stops earlier (demos, tests).
      max_steps=0,
  ))

  model = config.model = ml_collections.ConfigDict()
  model.name = 'SelfSupModel'   # 'SelfSupModel' | 'SemiSupModel' | 'VelSupModel'
  # Whole-model checkpoint (`.ckpt` or converted dir) loaded into both networks.
  model.checkpoint_path = ''
  # With a `.ckpt` in checkpoint_path: also take its Adam moments and continue
  # after its stored epoch (the reference's "resume training from a .ckpt").
  model.continue_training = False
  for net in ('depth_net', 'pose_net'):
    model[net] = ml_collections.ConfigDict(dict(
        name='',              # class name, e.g. 'PackNet01', 'DepthResNet', 'PoseNet'
        version='',           # e.g. '1A', '18pt' ('pt': ImageNet-initialised encoder)
        dropout=0.0,
        checkpoint_path='',   # `.ckpt` or converted dir, this network only
        # torchvision ResNet `.pth` (or its converted directory) for a 'pt' version's encoder.
        pretrained_encoder='',
    ))
  # Rematerialisation of the depth net (jax.checkpoint per block) to trade compute for memory:
  # 'none' | 'full' (recompute every block in the backward pass) | 'save_conv' (keep conv outputs).
  model.remat = 'none'
  model.loss = ml_collections.ConfigDict(dict(
      num_scales=4,
      progressive_scaling=0.0,   # no effect, as in the reference (docs/reference.md §4.6)
      flip_lr_prob=0.5,
      rotation_mode='euler',
      upsample_depth_maps=True,
      ssim_loss_weight=0.85,
      smooth_loss_weight=0.001,
      C1=1e-4,
      C2=9e-4,
      photometric_reduce_op='min',
      clip_loss=0.0,
      padding_mode='zeros',
      automask_loss=True,
      velocity_loss_weight=0.1,
      supervised_method='sparse-l1',
      supervised_num_scales=4,
      supervised_loss_weight=0.9,
  ))
  model.params = ml_collections.ConfigDict(dict(
      crop='', min_depth=0.0, max_depth=80.0, scale_output='resize'))

  config.optim = ml_collections.ConfigDict(dict(
      name='Adam',
      depth=dict(lr=2e-4, weight_decay=0.0),
      pose=dict(lr=2e-4, weight_decay=0.0),
      # StepLR in epochs: lr * gamma ** (epoch // step_size).
      scheduler=dict(name='StepLR', step_size=10, gamma=0.5),
      grad_clip_norm=0.0,   # 0: no clipping (reference)
  ))

  datasets = config.datasets = ml_collections.ConfigDict()
  datasets.augmentation = ml_collections.ConfigDict(dict(
      image_shape=(),
      jittering=(0.2, 0.2, 0.2, 0.05),
      crop_train_borders=(),
      crop_eval_borders=(),
  ))
  datasets.train = _split(8, 1, 1, True)
  # List each train dataset this many times per epoch (a scalar, or one value per dataset).
  datasets.train.repeat = _PerDataset(1)
  datasets.validation = _split(1, 0, 0, False)
  datasets.test = _split(1, 0, 0, False)

  config.train = ml_collections.ConfigDict(dict(
      # Stop after this many consecutive steps with a non-finite loss/gradient
      # (each such step is skipped: parameters and optimiser state are kept).
      max_consecutive_nonfinite=10,
      # Depth-collapse report (train/collapse.py): a constant inverse depth (per-image std/mean
      # below collapse_spread) with a vanished depth gradient (global norm below
      # collapse_grad_norm) for collapse_patience consecutive steps; 0 patience = off.
      collapse_spread=1e-3,
      collapse_grad_norm=1e-5,
      collapse_patience=10,
  ))

  config.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=1000,     # 0: only at the end of each epoch and of training
      every_epochs=1,
      keep=5,               # keep the last N checkpoints
      async_save=True,
      # Also keep the best checkpoints by a validation metric, e.g. 'abs_rel_pp_gt' (<metric><'', '_pp',
      # '_gt', '_pp_gt'>, the reference's names); '' = none (the reference's default 'loss' is not logged).
      monitor='',
      monitor_index=0,      # which validation dataset the monitored metric is read from
      mode='auto',          # 'min' | 'max' | 'auto' (max for a1/acc metrics, else min)
      save_top_k=5,         # with a monitor: keep this many best checkpoints (0 or -1: all)
  ))

  config.logging = ml_collections.ConfigDict(dict(
      log_every_steps=50,
      image_every_steps=500,   # colour-mapped inverse depth next to the input
      progress_every_steps=100,
      # Weights & Biases (reference: wandb.*; its dry_run=True default = enabled False). Process 0 logs
      # the TensorBoard scalars and images; the run id is kept in <workdir>/wandb_run_id.txt.
      wandb=ml_collections.ConfigDict(dict(
          enabled=False,   # needs `pip install packnet-jax[wandb]`
          project='',      # '' = WANDB_PROJECT (reference default)
          entity='',       # '' = WANDB_ENTITY (reference default)
          name='',         # run name ('' = W&B's generated one)
          tags=(),         # run tags, e.g. ('kitti', 'packnet')
          mode='',         # 'online' / 'offline' / 'disabled'; '' = WANDB_MODE or online
      )),
  ))

  config.eval = ml_collections.ConfigDict(dict(
      schedule='epoch',       # when training validates: 'epoch' (after each, reference) | 'steps' | 'off'
      every_steps=1000,       # the validation interval with schedule 'steps'
      max_batches=0,          # 0: the whole validation split
      post_process=True,      # also report flip post-processed metrics
      # GT distance bins in metres for the per-bin rows, as 'lo,edge,...,hi' ('' = 0,10,20,40,80).
      distance_bins='',
  ))

  config.distributed = ml_collections.ConfigDict(dict(
      # True: call jax.distributed.initialize() (arguments below, or the
      # cluster's environment variables when left empty / -1).
      enabled=False,
      coordinator_address='',
      num_processes=-1,
      process_id=-1,
  ))
  config.lock()
  return config
