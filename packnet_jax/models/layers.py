"""PackNet building blocks (docs/reference.md §2.1) and helpers shared by every network.

All tensors are NHWC. Submodule names mirror the attribute names of the PyTorch
reference (`conv_base`, `normalize`, `conv3d`, Sequential indices as '0', '1',
...) so that `packnet_jax.convert.keymap` derives every torch state-dict key
mechanically from the Flax variable path.

Every convolution output is tagged with `jax.ad_checkpoint.checkpoint_name`
(CONV_OUTPUT) so that `remat(..., 'save_conv')` can keep exactly those arrays.
"""
import functools
from typing import Any, Callable, Tuple

import flax.linen as nn
from flax.core import lift as flax_lift
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from packnet_jax.models import concat_conv
from packnet_jax.models import initializers
from packnet_jax.models import pack_conv
from packnet_jax.utils import ordering

Dtype = Any

# Name given to every convolution output (the arrays the 'save_conv' remat policy keeps).
CONV_OUTPUT = 'conv_output'
REMAT_MODES = ('none', 'full', 'save_conv')


# ----------------------------------------------------------------------------
# Shared helpers.


class Conv(nn.Conv):
  """nn.Conv whose output is named CONV_OUTPUT for the remat policy (same parameters)."""

  def __call__(self, inputs):
    return checkpoint_name(super().__call__(inputs), CONV_OUTPUT)


def conv(features, kernel_size, stride=1, padding=0, use_bias=True, *, name, dtype=jnp.float32,
         conv_general_dilated=None, kernel_init=initializers.xavier_uniform, bias_init=initializers.zeros):
  """A 2-D convolution with explicit symmetric padding.

  torch pads both sides equally; Flax 'SAME' would put the odd pad at the end
  for strided convs, so padding is always given explicitly. `conv_general_dilated`
  replaces `lax.conv_general_dilated` (same signature, same parameters). Its
  backward pass transposes the kernel only once it is needed
  (`ordering.weights_read_late`). The default initialisers are those of the
  reference's own networks (PackNet01/PackNetSlim01 and PoseNet `init_weights`:
  xavier_uniform_, zero bias); the ResNet parts pass torchvision's or torch's default.
  """
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size, kernel_size)
  return Conv(features, kernel_size, strides=stride, padding=[(padding, padding)] * len(kernel_size),
              use_bias=use_bias, dtype=dtype, param_dtype=param_dtype(dtype), name=name,
              kernel_init=kernel_init, bias_init=bias_init,
              conv_general_dilated=ordering.weights_read_late(conv_general_dilated or jax.lax.conv_general_dilated))


def elu(x):
  """torch's ELU (alpha 1): x if x > 0 else exp(x) − 1.

  In float32 this uses exp(x) − 1 rather than expm1(x): XLA:CPU's expm1 runs at
  half the speed of exp (5.8 vs 2.8 ms on a 2×192×640×32 map; ReLU 2.2), and the
  two differ by at most 1.2e-7 (float32 rounding of exp(x) near 1; torch's own
  expm1 is within 1 ulp of either). Same gradient, exp(x). Other dtypes keep
  expm1, whose relative accuracy near 0 a 16-bit exp(x) − 1 would lose.
  """
  if x.dtype != jnp.float32:
    return nn.elu(x)
  return jnp.where(x > 0, x, jnp.exp(jnp.minimum(x, 0)) - 1)


def spatial_sum(x, rows=16):
  """[B, *spatial, C] → [B, C]: the sum over the spatial axes, in two stages.

  The pixels are split into r ≤ `rows` equal runs (r the largest divisor of the
  pixel count), summed element-wise (a sum over a major axis of r: XLA:CPU fuses
  the producer, e.g. GroupNorm's squared deviations, into that loop instead of
  materialising it for a tree reduction, which it does above 32), then the
  P/r partial pixels. GroupNorm at 96×320×16 with ReLU: 0.87 → 0.33 ms; at
  192×640×64: 19 → 4.4 ms (2-core AVX-512 CPU, medians of 50 calls).
  """
  b, c = x.shape[0], x.shape[-1]
  pixels = functools.reduce(lambda n, size: n * size, x.shape[1:-1], 1)
  r = max(d for d in range(1, rows + 1) if pixels % d == 0)
  return x.reshape(b, r, (pixels // r) * c).sum(1).reshape(b, pixels // r, c).sum(1)


class GroupNorm(nn.Module):
  """torch GroupNorm(num_groups, C) on NHWC: biased two-pass variance, statistics in `param_dtype`.

  Same parameters as nn.GroupNorm ('scale', 'bias'). The statistics are per-channel
  sums over H, W (`spatial_sum`) folded into groups afterwards, and the
  normalisation is one per-channel multiply-add: on XLA:CPU this is about twice as
  fast as reducing over a [.., G, C/G] view. `activation` (e.g. `elu`) is applied
  to the result.

  Normalisation and activation are recomputed in the backward pass from the
  input (jax.checkpoint): autodiff would otherwise keep the normalised map as
  well as the input and the output, one more activation-sized array per block.
  """
  num_groups: int = 16
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  activation: Callable[[Any], Any] | None = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    if c % self.num_groups:
      raise ValueError(f'GroupNorm: x: channels must be a multiple of {self.num_groups}, got shape {tuple(x.shape)}')
    scale = self.param('scale', nn.initializers.ones, (c,), param_dtype(self.dtype))
    bias = self.param('bias', nn.initializers.zeros, (c,), param_dtype(self.dtype))
    return jax.checkpoint(self._normalize)(x, scale, bias)

  def _normalize(self, x, scale, bias):
    b, c = x.shape[0], x.shape[-1]
    g = self.num_groups
    x32 = jnp.asarray(x, param_dtype(self.dtype))
    spatial = tuple(range(1, x.ndim - 1))
    count = (c // g) * functools.reduce(lambda n, axis: n * x.shape[axis], spatial, 1)

    def per_channel(group_sums):  # [B, G] → [B, C]
      return jnp.repeat(group_sums, c // g, axis=1)

    def group_sum(channel_sums):  # [B, C] → [B, G]
      return channel_sums.reshape(b, g, c // g).sum(-1)

    mean = per_channel(group_sum(spatial_sum(x32)) / count)
    centred = x32 - mean.reshape((b,) + (1,) * len(spatial) + (c,))
    var = per_channel(group_sum(spatial_sum(jnp.square(centred))) / count)
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    add = bias - mean * mul
    shape = (b,) + (1,) * len(spatial) + (c,)
    y = (x32 * mul.reshape(shape) + add.reshape(shape)).astype(self.dtype)
    return y if self.activation is None else self.activation(y)


def group_norm(*, name, dtype=jnp.float32, activation=None):
  """torch GroupNorm(16, C): biased variance, eps 1e-5, two-pass variance; then `activation`."""
  return GroupNorm(num_groups=16, epsilon=1e-5, dtype=dtype, activation=activation, name=name)


def remat(module_cls, mode, static_argnums=()):
  """`module_cls` under jax.checkpoint for config `model.remat` ('none' | 'full' | 'save_conv').

  'full' keeps nothing inside the block (all of it is recomputed in the backward
  pass); 'save_conv' keeps the convolution outputs (CONV_OUTPUT) and recomputes
  the cheap normalisations and activations. `static_argnums` counts `self` as 0
  (e.g. (2,) for a `train` flag passed as the second argument).

  jax.checkpoint keeps the recomputation apart from the forward pass with
  optimisation barriers. XLA:GPU honours them until it has scheduled the program;
  XLA:CPU removes them before it fuses anything, and its CSE merged the
  recomputation back into the forward pass: remat saved nothing on CPU. So the
  checkpointed block also gets a custom VJP (`_recompute_after_cotangent`) whose
  backward pass makes the saved activations depend on the output cotangent
  (adding a -0.0 derived from it): the recomputation then differs from the
  forward computation and cannot start before the cotangent exists, on every
  backend. (A lax.cond around the block does the same, but XLA:CPU leaves the
  convolutions inside conditionals to its slow generic emitter: 18x slower.)
  """
  if mode not in REMAT_MODES:
    raise ValueError(f'model.remat: expected one of {REMAT_MODES}, got {mode!r}')
  if mode == 'none':
    return module_cls
  policy = None if mode == 'full' else jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT)
  checkpointed = nn.remat(module_cls, policy=policy, static_argnums=static_argnums)
  # lift_transform passes the arguments after `self`: shift the indices by one.
  return nn.transforms.lift_transform(_recompute_after_cotangent, checkpointed,
                                      static_argnums=tuple(i - 1 for i in static_argnums))


def _recompute_after_cotangent(fn, *, static_argnums):
  """Flax core transform: `fn` with a VJP whose saved activations are tied to the output cotangent."""
  tied = []  # per residual leaf: tie it (an activation) or not (a variable); set by the forward pass

  def forward(scope, *args):
    dynamic = [i for i in range(len(args)) if i not in static_argnums]

    def call(scope, *dynamic_args):
      full = list(args)
      for i, value in zip(dynamic, dynamic_args):
        full[i] = value
      return fn(scope, *full)
    scopes = scope if isinstance(scope, (list, tuple)) else [scope]  # custom_vjp hands a list
    variables = {id(x) for s in scopes for x in jax.tree_util.tree_leaves(s.variables())}
    y, vjp_fn = flax_lift.vjp(call, scope, *[args[i] for i in dynamic])
    tied[:] = [id(x) not in variables for x in jax.tree_util.tree_leaves(vjp_fn)]
    return y, vjp_fn

  def backward(*args):
    vjp_fn, y_ct = args[-2:]
    zero = ordering.negative_zero_from(y_ct)
    leaves, treedef = jax.tree_util.tree_flatten(vjp_fn)
    leaves = [ordering.add_zero(x, zero) if tie else x for x, tie in zip(leaves, tied, strict=True)]
    params_ct, *inputs_ct = jax.tree_util.tree_unflatten(treedef, leaves)(y_ct)
    return (params_ct, *inputs_ct)
  # custom_vjp counts the variables as argument 0.
  return flax_lift.custom_vjp(fn, forward, backward, nondiff_argnums=tuple(i + 1 for i in static_argnums))


def upsample_nearest2(x):
  """Nearest ×2 upsampling of [B,H,W,C]: pixel (y, x) ← (⌊y/2⌋, ⌊x/2⌋)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def check_depth_input(rgb, net_name):
  """Depth nets need [B,H,W,3] with H, W multiples of 32 (docs/reference.md §2.8)."""
  if rgb.ndim != 4 or rgb.shape[-1] != 3:
    raise ValueError(f'{net_name}: rgb: expected shape [B,H,W,3], got {tuple(rgb.shape)}')
  if rgb.shape[1] % 32 or rgb.shape[2] % 32:
    raise ValueError(f'{net_name}: rgb: H and W must be multiples of 32, got shape {tuple(rgb.shape)}')


def check_pose_inputs(target, contexts, net_name, nb_ref_imgs=None):
  """Pose nets need target [B,H,W,3] and contexts [B,N,H,W,3] (N = nb_ref_imgs if given)."""
  if target.ndim != 4 or target.shape[-1] != 3:
    raise ValueError(f'{net_name}: target: expected shape [B,H,W,3], got {tuple(target.shape)}')
  b, h, w, _ = target.shape
  if (contexts.ndim != 5 or contexts.shape[0] != b or contexts.shape[1] < 1
      or tuple(contexts.shape[2:]) != (h, w, 3)):
    raise ValueError(f'{net_name}: contexts: expected shape [{b},N,{h},{w},3], got {tuple(contexts.shape)}')
  if nb_ref_imgs is not None and contexts.shape[1] != nb_ref_imgs:
    raise ValueError(f'{net_name}: contexts: expected {nb_ref_imgs} context images (nb_ref_imgs), '
                     f'got shape {tuple(contexts.shape)}')


def param_dtype(dtype):
  """The dtype of parameters, normalisation statistics and outputs for compute dtype `dtype`.

  float64 keeps everything in float64 (the noise-free run that float32 is measured against);
  float32 and the 16-bit dtypes keep float32, so a 16-bit run rounds only its activations.
  """
  return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def to_output_dtype(x):
  """A network output in `param_dtype(x.dtype)`: float32 from 16-bit activations, float64 stays."""
  return jnp.asarray(x, param_dtype(x.dtype))


def select_scales(inv_depths, train, all_scales=None):
  """The reference returns all 4 scales in train mode and the full-res map in eval.

  `all_scales` overrides that choice independently of `train` (e.g. the 4-scale
  pyramid with BatchNorm running averages).
  """
  return inv_depths if (train if all_scales is None else all_scales) else inv_depths[0]


# ----------------------------------------------------------------------------
# Space-to-depth / depth-to-space with the reference's channel order.
#
# PackNet's Conv3d runs along the channel axis of the packed features, so the
# packing layers keep those channels "depth-major" ([B, D, H, W]) between the
# space-to-depth and the 3-D convolution: one transpose does both jobs.


def _check_packable(x, r, what):
  b, h, w, c = x.shape
  if h % r or w % r:
    raise ValueError(f'{what}: x: H and W must be multiples of {r}, got shape {tuple(x.shape)}')
  return b, h, w, c


def packing_depth_major(x, r=2):
  """[B,H,W,C] → [B, r²C, H/r, W/r], depth index c·r² + i·r + j ← pixel (r·y+i, r·x+j) of channel c."""
  b, h, w, c = _check_packable(x, r, 'packing')
  x = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 5, 2, 4, 1, 3)  # [B, C, i, j, h, w]
  return x.reshape(b, c * r * r, h // r, w // r)


def packing(x, r=2):
  """[B,H,W,C] → [B,H/r,W/r,r²C] with channel c·r² + i·r + j ← pixel (r·y+i, r·x+j) of channel c."""
  b, h, w, c = _check_packable(x, r, 'packing')
  x = x.reshape(b, h // r, r, w // r, r, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)  # [B, h, w, C, i, j]: channel-major, as torch.
  return x.reshape(b, h // r, w // r, c * r * r)


def pixel_shuffle(x, r=2):
  """torch PixelShuffle(r) in NHWC: inverse of `packing`."""
  b, h, w, c = x.shape
  if c % (r * r):
    raise ValueError(f'pixel_shuffle: x: channels must be a multiple of {r * r}, got shape {tuple(x.shape)}')
  x = x.reshape(b, h, w, c // (r * r), r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # [B, h, i, w, j, C]
  return x.reshape(b, h * r, w * r, c // (r * r))


def pixel_shuffle_depth_major(y, r=2):
  """PixelShuffle(r) of `pack_conv.depth_major_to_nhwc(y)` in one transpose: [B,D,H,W,d] → [B,rH,rW,d·D/r²]."""
  b, depth, h, w, d = y.shape
  if depth % (r * r):
    raise ValueError(f'pixel_shuffle: x: channels must be a multiple of {r * r}, got depth {depth}')
  # Channel k·D + c, c = c1·r² + i·r + j, goes to pixel (r·y+i, r·x+j), channel k·D/r² + c1.
  y = y.reshape(b, depth // (r * r), r, r, h, w, d).transpose(0, 4, 2, 5, 3, 6, 1)
  return y.reshape(b, h * r, w * r, d * depth // (r * r))


# ----------------------------------------------------------------------------
# PackNet blocks.


class Conv2D(nn.Module):
  """Zero-pad k//2 → Conv(k, stride) → GroupNorm(16) → ELU.

  `input_parts`: the channel counts of the parts `x` was concatenated from, if
  it was; the input gradient is then computed per part (models/concat_conv.py).
  """
  features: int
  kernel_size: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  input_parts: Tuple[int, ...] = ()

  @nn.compact
  def __call__(self, x):
    x = conv(self.features, self.kernel_size, self.stride, self.kernel_size // 2, name='conv_base',
             dtype=self.dtype,
             conv_general_dilated=concat_conv.per_part_input_grad(self.input_parts) if self.input_parts else None)(x)
    return group_norm(name='normalize', dtype=self.dtype, activation=elu)(x)


class ResidualConv(nn.Module):
  """ELU(GroupNorm(conv2(conv1(x)) + conv3(x))) with a 1×1 strided shortcut conv3."""
  features: int
  stride: int = 1
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    out = Conv2D(self.features, 3, self.stride, dtype=self.dtype, name='conv1')(x)
    out = Conv2D(self.features, 3, 1, dtype=self.dtype, name='conv2')(out)
    shortcut = conv(self.features, 1, self.stride, name='conv3', dtype=self.dtype)(x)
    if self.dropout:
      # torch Dropout2d zeroes whole channels: broadcast the mask over H and W.
      shortcut = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(shortcut)
    return group_norm(name='normalize', dtype=self.dtype, activation=elu)(out + shortcut)


class Stage(nn.Module):
  """A torch Sequential of `num_blocks` blocks named '0', '1', ...; only the first is strided.

  `block` is a partial Module constructor taking `stride` and `name`; each block
  is called as block(x, train).
  """
  block: Callable[..., nn.Module]
  num_blocks: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train=False):
    for i in range(self.num_blocks):
      x = self.block(stride=self.stride if i == 0 else 1, name=str(i))(x, train)
    return x


def ResidualBlock(features, num_blocks, stride=1, dropout=0.0, dtype=jnp.float32, name=None,  # noqa: N802
                  remat_mode='none'):
  """ResidualConv(stride) followed by num_blocks−1 ResidualConv(1) (a function, as in the reference).

  `remat_mode` (see `remat`) applies to each ResidualConv.
  """
  block = functools.partial(remat(ResidualConv, remat_mode, static_argnums=(2,)), features,
                            dropout=dropout, dtype=dtype)
  return Stage(block, num_blocks, stride, name=name)


class InvDepth(nn.Module):
  """Zero-pad 1 → Conv3×3 → sigmoid / min_depth: inverse depth in (0, 1/min_depth)."""
  out_channels: int = 1
  min_depth: float = 0.5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = conv(self.out_channels, 3, 1, 1, name='conv1', dtype=self.dtype)(x)
    return nn.sigmoid(x) / self.min_depth


class Conv3dUnit(nn.Module):
  """torch Conv3d(1 → d, 3×3×3, pad 1) over (depth, H, W): depth-major [B,D,H,W] → [B,D,H,W,d].

  Parameters are those of a Flax 3-D nn.Conv ('kernel' [3,3,3,1,d] as
  (depth, H, W, in, out), 'bias' [d]), so checkpoints convert unchanged.
  Computed as one 2-D convolution on every backend (`pack_conv.conv3d_depth_major`):
  forward and backward are ordinary 2-D convolutions whose memory is a few
  copies of the input. `weights()` returns the parameters in the compute dtype
  for a caller that fuses them with the next convolution.
  """
  features: int
  dtype: Dtype = jnp.float32

  def setup(self):
    # The reference's PackNet init_weights: xavier_uniform_ (fans over the 3×3×3 taps), zero bias.
    self.kernel = self.param('kernel', initializers.xavier_uniform, (3, 3, 3, 1, self.features),
                             param_dtype(self.dtype))
    self.bias = self.param('bias', nn.initializers.zeros, (self.features,), param_dtype(self.dtype))

  def weights(self):
    return self.kernel.astype(self.dtype), self.bias.astype(self.dtype)

  def __call__(self, x):
    y = pack_conv.conv3d_depth_major(jnp.asarray(x, self.dtype), *self.weights(), spatial_padding=1)
    return checkpoint_name(y, CONV_OUTPUT)


class ConvWeights(nn.Module):
  """The parameters of a `conv` (same names, shapes and initialisers), for a fused convolution."""
  features: int
  kernel_size: int
  in_features: int
  dtype: Dtype = jnp.float32

  def setup(self):
    shape = (self.kernel_size, self.kernel_size, self.in_features, self.features)
    self.kernel = self.param('kernel', initializers.xavier_uniform, shape, param_dtype(self.dtype))
    self.bias = self.param('bias', nn.initializers.zeros, (self.features,), param_dtype(self.dtype))

  def weights(self):
    return self.kernel.astype(self.dtype), self.bias.astype(self.dtype)


class PackLayerConv3d(nn.Module):
  """packing → Conv3d(1→d) → Conv2D(d·4C → C, k): [B,H,W,C] → [B,H/2,W/2,C].

  The Conv3d and Conv2D's convolution run as `pack_conv.pack_conv` (one fused
  convolution where cheaper, with its border corrected); the parameter tree is the
  reference's ('conv3d', 'conv/conv_base', 'conv/normalize').
  """
  kernel_size: int
  d: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    x = jnp.asarray(x, self.dtype)
    kernel3d, bias3d = Conv3dUnit(self.d, dtype=self.dtype, name='conv3d').weights()
    return _PackConv2D(channels, self.kernel_size, dtype=self.dtype, name='conv')(
        packing(x, 2), packing_depth_major(x, 2), kernel3d, bias3d)


class _PackConv2D(nn.Module):
  """The Conv2D of a packing layer, its convolution fused with the preceding Conv3d: → GroupNorm → ELU."""
  features: int
  kernel_size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, packed, packed_depth_major, kernel3d, bias3d):
    in_features = packed.shape[-1] * kernel3d.shape[-1]
    kernel, bias = ConvWeights(self.features, self.kernel_size, in_features, dtype=self.dtype,
                               name='conv_base').weights()
    y = pack_conv.pack_conv(packed, packed_depth_major, kernel3d, bias3d, kernel, bias)
    y = checkpoint_name(y, CONV_OUTPUT)
    return group_norm(name='normalize', dtype=self.dtype, activation=elu)(y)


class UnpackLayerConv3d(nn.Module):
  """Conv2D(→ 4·Cout/d, k) → Conv3d(1→d) → PixelShuffle(2): [B,H,W,Cin] → [B,2H,2W,Cout]."""
  features: int
  kernel_size: int = 3
  d: int = 8
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = Conv2D(self.features * 4 // self.d, self.kernel_size, 1, dtype=self.dtype, name='conv')(x)
    x = Conv3dUnit(self.d, dtype=self.dtype, name='conv3d')(jnp.moveaxis(x, -1, 1))
    return pixel_shuffle_depth_major(x, 2)
