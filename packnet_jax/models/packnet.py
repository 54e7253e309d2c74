"""PackNet01 and PackNetSlim01 depth networks (docs/reference.md §2.2, §2.3), NHWC.

One implementation parametrised by the channel widths and the number of 3-D
features; the two public classes only differ in those class constants.
`version` is read as the reference does: only `version[1:]` matters, 'A' =
concatenate the skip, 'B' = add it. Initialised as the reference's `init_weights`:
every Conv2d and Conv3d kernel xavier_uniform_ with zero bias (the default of
`layers.conv`, and of the Conv3d and packing-layer weights in packnet_blocks.py), GroupNorm 1 / 0.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from packnet_jax.models import layers
from packnet_jax.models import packnet_blocks as blocks
from packnet_jax.models.fast.remat import remat

_NUM_BLOCKS = (2, 2, 3, 3)
_PACK_KERNELS = (5, 3, 3, 3, 3)
_UNPACK_KERNEL = 3
_ICONV_KERNEL = 3


class PackNet01(nn.Module):
  """PackNet with 3-D packing (CVPR 2020).

  Attributes:
    version: '1A' (concatenated skips) or '1B' (added skips).
    dropout: Dropout2d rate on the residual shortcuts (0 = off; train mode then
      needs a 'dropout' rng).
    dtype: compute dtype; parameters and outputs are `utils.dtypes.param_dtype(dtype)` (float32 unless float64).
    remat: 'none' | 'full' | 'save_conv' (config `model.remat`): jax.checkpoint
      around every block (stem convs, residual convs, packing, unpacking, iconv
      and inverse-depth layers); see `fast.remat.remat`.

  __call__(rgb [B,H,W,3] in [0,1], train=False, all_scales=None) returns, in train
  mode, the list of 4 inverse depths [inv1 (full res), inv2, inv3, inv4] and in
  eval mode inv1 [B,H,W,1], all in (0, 2); `all_scales` overrides the choice.
  """
  version: str = '1A'
  dropout: float = 0.0
  dtype: Any = jnp.float32
  remat: str = 'none'

  _NI = 64
  _WIDTHS = (64, 64, 128, 256, 512)
  _NUM_3D_FEAT = 8

  def _stacking(self):
    stacking = str(self.version)[1:]
    if stacking not in ('A', 'B'):
      raise ValueError(f'{type(self).__name__}: version: expected "1A" or "1B", got {self.version!r}')
    return stacking

  def _unpack_widths(self, stacking):
    """Output channels of unpack1..unpack5 (reference n1o..n5o)."""
    n1, n2, n3, n4, n5 = self._WIDTHS
    if stacking == 'A':
      return (n1, n2, n3, n4, n5)
    return (n1, n2, n3 // 2, n4 // 2, n5 // 2)

  def _combine(self, stacking, level, unpacked, skip):
    if stacking == 'A':
      return [unpacked, skip]
    if unpacked.shape[-1] != skip.shape[-1]:
      # PackNetSlim01 '1B' has this mismatch at level 2: the reference builds it (so
      # init creates the same parameters) but its forward fails, and so does ours.
      if self.is_initializing():
        return [unpacked]
      raise ValueError(f'{type(self).__name__} version {self.version!r}: unpack{level} output has '
                       f'{unpacked.shape[-1]} channels but skip{level} has {skip.shape[-1]}; '
                       'they cannot be added (the reference network fails the same way)')
    return [unpacked + skip]

  @nn.compact
  def __call__(self, rgb, train=False, all_scales=None):
    name = type(self).__name__
    stacking = self._stacking()
    layers.check_depth_input(rgb, name)
    dt, d = self.dtype, self._NUM_3D_FEAT
    widths = self._WIDTHS
    conv2d, pack, unpack, inv_depth = (remat(cls, self.remat) for cls in (
        blocks.Conv2D, blocks.PackLayerConv3d, blocks.UnpackLayerConv3d, blocks.InvDepth))
    x = conv2d(self._NI, 5, 1, dtype=dt, name='pre_calc')(jnp.asarray(rgb, dt))

    # Encoder. Skips are the stem and the *packed* features (docs/reference.md §11 item 1).
    skips = [x]
    feat = conv2d(widths[0], 7, 1, dtype=dt, name='conv1')(x)
    for i in range(5):
      if i > 0:
        feat = blocks.ResidualBlock(widths[i], _NUM_BLOCKS[i - 1], 1, self.dropout, dtype=dt,
                                    name=f'conv{i + 1}', remat_mode=self.remat)(feat, train)
      feat = pack(_PACK_KERNELS[i], d, dtype=dt, name=f'pack{i + 1}')(feat)
      skips.append(feat)

    # Decoder, coarse to fine; inverse depths from level 4 down.
    x = skips.pop()
    unpack_widths = self._unpack_widths(stacking)
    inv_depths, up_inv = [], None
    for level in (5, 4, 3, 2, 1):
      unpacked = unpack(unpack_widths[level - 1], _UNPACK_KERNEL, d, dtype=dt, name=f'unpack{level}')(x)
      parts = self._combine(stacking, level, unpacked, skips[level - 1])
      if up_inv is not None:
        parts.append(up_inv.astype(dt))
      x = conv2d(widths[level - 1], _ICONV_KERNEL, 1, dtype=dt, name=f'iconv{level}')(parts)
      if level <= 4:
        inv = inv_depth(dtype=dt, name=f'disp{level}_layer')(x)
        inv_depths.insert(0, layers.to_output_dtype(inv))
        up_inv = layers.upsample_nearest2(inv)
    return layers.select_scales(inv_depths, train, all_scales)


class PackNetSlim01(PackNet01):
  """PackNet01 with ni = n1 = 32 and 4 3-D features per (un)packing layer."""
  _NI = 32
  _WIDTHS = (32, 64, 128, 256, 512)
  _NUM_3D_FEAT = 4
