"""The packing layer's Conv3d → Conv2d pair, computed as one 2-D convolution where that is cheaper.

Why: the pair's d·D-channel intermediate dominated PackNet01's memory and time; fused, it never
exists (docs/performance.md).

A PackLayerConv3d applies a Conv3d(1→d, 3×3×3) over (packed channel, H, W) and
then a k×k Conv2d over the d·D flattened channels. Both are linear and nothing
sits between them, so away from the image border the pair equals ONE
(k+2)×(k+2) convolution from the D packed channels to C, with kernel

  K[p+i, q+j, z+t−1, c] = Σ_f w3[t, i, j, f] · w2[p, q, f·D + z, c]   (+ a constant bias).

The d·D-channel intermediate (1 GiB at PackNet01's first packing layer, batch 4,
192×640) then never exists, in the forward or the backward pass, and the
convolution costs (k+2)²·D·C instead of k²·d·D·C multiply-adds per pixel.

At the border the pair is NOT one convolution: the Conv2d sees zeros outside
the image where the fused kernel sees the Conv3d continued there. The Conv2d of
those outside values (a ring k//2 wide) is subtracted from the outermost k//2
rows and columns; the result equals the reference's to float rounding.

Which formulation runs is decided from the static shapes alone (`use_fused`),
identically on every backend: the fused one when it needs fewer operations.
"""
import jax
import jax.numpy as jnp

from packnet_jax.models.fast.weights_read_late import weights_read_late
from packnet_jax.models.packing import packing, packing_depth_major

# Building K reads the Conv2d kernel three times with little arithmetic per byte:
# counted as this many multiply-adds per multiply-add in the cost comparison.
_KERNEL_BUILD_PENALTY = 4
# Building K (and its gradient) keeps temporaries of about this many times the Conv2d kernel's size.
_KERNEL_BUILD_MEMORY = 4


def conv3d_depth_major(x, kernel, bias, spatial_padding):
  """torch Conv3d(1 → d, 3×3×3, depth padding 1) of depth-major x [B,D,H,W] → [B,D,H',W',d].

  Computed as a 2-D convolution: the 3 depth taps are 3 input channels (copies
  of x shifted by −1, 0, +1 along depth) and depth is folded into the batch.
  `spatial_padding` is the zero padding of H and W (1 = the reference's, 0 = valid).
  """
  b, depth, h, w = x.shape
  d = kernel.shape[-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
  taps = jnp.stack([padded[:, t:t + depth] for t in range(3)], axis=-1)  # [B, D, H, W, 3]
  kernel2d = kernel[:, :, :, 0, :].transpose(1, 2, 0, 3)  # [kh, kw, 3 taps, d]
  pad = [(spatial_padding, spatial_padding)] * 2
  y = jax.lax.conv_general_dilated(taps.reshape(-1, h, w, 3), kernel2d, (1, 1), pad,
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  y = y + bias
  return y.reshape(b, depth, y.shape[1], y.shape[2], d)


def depth_major_to_nhwc(y):
  """Conv3d output [B,D,H,W,d] → [B,H,W,d·D] (channel k·D + c, torch's view of [B,d,D,H,W])."""
  b, depth, h, w, d = y.shape
  return y.transpose(0, 2, 3, 4, 1).reshape(b, h, w, d * depth)


@weights_read_late  # pack5's kernel is 302 MB: its transposed copy must not live long
def _conv2d_padded(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _conv2d(x, kernel, padding):
  return _conv2d_padded(x, kernel, ((padding, padding),) * 2)


def use_fused(batch, h, w, depth, d, k, c):
  """True when the fused formulation is leaner and needs fewer multiply-adds, for these static shapes.

  Leaner: building K and its gradient takes temporaries a few times the Conv2d
  kernel's size, so fusing pays only where the d·D-channel intermediate it
  removes is larger than that (PackNet01's first three packing layers at
  training sizes; not the last two, whose kernels hold most of the weights).
  """
  p = k // 2
  if h <= 2 * p or w <= 2 * p:
    return False
  if not isinstance(batch, int):  # a symbolic batch (shape-polymorphic export): decide for batch 1
    batch = 1
  if batch * h * w * d * depth < _KERNEL_BUILD_MEMORY * k * k * d * depth * c:
    return False
  direct_per_pixel = 27 * d * depth + k * k * d * depth * c
  direct = batch * h * w * direct_per_pixel
  # The ring's Conv3d, and its Conv2d onto the border (computed over k//2 + 2·(k//2) rows or columns).
  ring = batch * 2 * p * (w + 2 * p + h) * 27 * d * depth
  border = batch * 2 * p * (w + h) * k * k * d * depth * c
  whole = batch * h * w * (k + 2) ** 2 * depth * c
  build = _KERNEL_BUILD_PENALTY * 27 * d * k * k * depth * c
  return whole + ring + border + build < direct


def fused_kernel(kernel3d, kernel2d):
  """K [k+2, k+2, D, C] of the Conv3d kernel [3,3,3,1,d] followed by the Conv2d kernel [k,k,d·D,C]."""
  k, _, dd, c = kernel2d.shape
  d = kernel3d.shape[-1]
  depth = dd // d
  w2 = kernel2d.reshape(k, k, d, depth, c)
  highest = jax.lax.Precision.HIGHEST  # a handful of operations; no reduced-precision shortcut
  by_tap = jnp.zeros((3, 3, k, k, depth, c), kernel2d.dtype)
  for t in range(3):
    e = jnp.einsum('ijf,pqfzc->ijpqzc', kernel3d[t, :, :, 0, :], w2, precision=highest)
    # Depth tap t reads packed channel z + t − 1 for Conv3d output z: shift by t − 1.
    if t == 0:
      e = jnp.pad(e[..., 1:, :], ((0, 0),) * 4 + ((0, 1), (0, 0)))
    elif t == 2:
      e = jnp.pad(e[..., :-1, :], ((0, 0),) * 4 + ((1, 0), (0, 0)))
    by_tap = by_tap + e
  # Spatial taps compose: Conv3d tap (i, j) then Conv2d tap (p, q) is fused tap (p+i, q+j).
  return sum(jnp.pad(by_tap[i, j], ((i, 2 - i), (j, 2 - j), (0, 0), (0, 0))) for i in range(3) for j in range(3))


def direct(packed_depth_major, kernel3d, bias3d, kernel2d, bias2d):
  """The reference's order: Conv3d, flatten (feature outermost), Conv2d. [B,D,H,W] → [B,H,W,C]."""
  y = depth_major_to_nhwc(conv3d_depth_major(packed_depth_major, kernel3d, bias3d, 1))
  return _conv2d(y, kernel2d, kernel2d.shape[0] // 2) + bias2d


def _with_regions(x, regions):
  """(x, x[:, r0:r1, c0:c1] for each ((r0, r1), (c0, c1)) in `regions`), with a lean backward.

  Autodiff would turn each slice's cotangent into a zero-padded copy of x's full
  size before summing them (four 130 MB buffers at PackNet01's first packing
  layer, batch 4, 192×640, all alive at the train step's memory peak). Here the
  regions' cotangents are added into x's own cotangent in place.
  """
  @jax.custom_vjp
  def split(x):
    return (x,) + tuple(x[:, r0:r1, c0:c1] for (r0, r1), (c0, c1) in regions)

  def backward(_, cotangents):
    x_ct = cotangents[0]
    for ((r0, r1), (c0, c1)), ct in zip(regions, cotangents[1:]):
      start = (0, r0, c0, 0)
      x_ct = jax.lax.dynamic_update_slice(x_ct, jax.lax.dynamic_slice(x_ct, start, ct.shape) + ct, start)
    return (x_ct,)

  split.defvjp(lambda x: (split(x), None), backward)
  return split(x)


def _ring_band(region, kernel3d, bias3d):
  """Conv3d outputs, bias included, on the valid part of `region` (a slice of the zero-padded map)."""
  return depth_major_to_nhwc(conv3d_depth_major(jnp.moveaxis(region, -1, 1), kernel3d, bias3d, 0))


def fused(packed, kernel3d, bias3d, kernel2d, bias2d):
  """One (k+2)×(k+2) convolution over the whole map, less what it adds at the border.

  The reference's Conv2d zero-pads the Conv3d output, while the fused kernel sees
  the Conv3d continued outside the image (its bias, and near the edge the taps
  that reach into the image). Those outside values occupy a ring k//2 wide; the
  Conv2d of the ring alone, subtracted from the k//2 outermost rows and columns,
  gives the reference's border (to float rounding). The ring is thin (k//2 rows or columns of the d·D-channel
  map), so neither pass ever holds a Conv3d output over image rows.

  [B,H,W,D] → [B,H,W,C]; needs H, W > 2·(k//2).
  """
  _, h, w, depth = packed.shape
  k, _, _, c = kernel2d.shape
  d = kernel3d.shape[-1]
  p = k // 2
  if h <= 2 * p or w <= 2 * p:
    raise ValueError(f'pack_conv.fused: packed: H and W must exceed {2 * p}, got shape {tuple(packed.shape)}')
  wide = jnp.promote_types(kernel2d.dtype, jnp.float32)  # 16-bit kernels are fused in float32
  kernel = fused_kernel(kernel3d.astype(wide), kernel2d.astype(wide)).astype(kernel2d.dtype)
  # The Conv2d of the (constant) Conv3d bias, plus its own: exact wherever the Conv3d is.
  const_bias = bias2d + jnp.einsum('pqfzc,f->c', kernel2d.reshape(k, k, d, depth, c), bias3d,
                                   precision=jax.lax.Precision.HIGHEST)
  # Ring bands in Conv3d coordinates ([start, stop) rows, columns) and the Conv2d padding that maps
  # each onto the k//2 border rows or columns it reaches. Top and bottom bands span the corners.
  bands = (((-p, 0), (-p, w + p), ((0, 2 * p), (0, 0))),
           ((h, h + p), (-p, w + p), ((2 * p, 0), (0, 0))),
           ((0, h), (-p, 0), ((p, p), (0, 2 * p))),
           ((0, h), (w, w + p), ((p, p), (2 * p, 0))))
  # In `padded` (offset p + 1), a band's Conv3d reads one more row and column on each side.
  padded, *regions = _with_regions(jnp.pad(packed, ((0, 0), (p + 1, p + 1), (p + 1, p + 1), (0, 0))),
                                   tuple(((r0 + p, r1 + p + 2), (c0 + p, c1 + p + 2))
                                         for (r0, r1), (c0, c1), _ in bands))
  out = _conv2d(padded, kernel, 0) + const_bias   # [B, H, W, C]
  corrections = [_conv2d_padded(_ring_band(region, kernel3d, bias3d), kernel2d, pad)
                 for region, (*_, pad) in zip(regions, bands)]
  top, bottom, left, right = corrections
  out = out.at[:, :p].add(-top).at[:, h - p:].add(-bottom)
  return out.at[:, :, :p].add(-left).at[:, :, w - p:].add(-right)


def pack_conv3d_conv2d(x, conv3d, conv2d):
  """packing → Conv3d → Conv2d (without its normalisation) of x [B,H,W,C] → [B,H/2,W/2,C'].

  `conv3d` = (kernel [3,3,3,1,d], bias [d]) and `conv2d` = (kernel [k,k,d·4C,C'], bias [C']), in
  the compute dtype. One fused convolution of the packed map where `use_fused` says it is cheaper;
  else the reference's order, from the packed map laid out depth-major (one transpose of x).
  """
  kernel3d, bias3d = conv3d
  kernel2d, bias2d = conv2d
  b, h, w, channels = x.shape
  k, _, _, c = kernel2d.shape
  if use_fused(b, h // 2, w // 2, 4 * channels, kernel3d.shape[-1], k, c):
    return fused(packing(x, 2), kernel3d, bias3d, kernel2d, bias2d)
  return direct(packing_depth_major(x, 2), kernel3d, bias3d, kernel2d, bias2d)
