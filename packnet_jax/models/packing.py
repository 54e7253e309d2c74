"""Space-to-depth (packing) and depth-to-space (PixelShuffle) with the reference's channel order, NHWC.

PackNet's Conv3d runs along the channel axis of the packed features, so the
layers keep those channels "depth-major" ([B, D, H, W]) next to the 3-D
convolution: one transpose does both jobs (`packing_depth_major`,
`pixel_shuffle_depth_major`).
"""


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
  """PixelShuffle(r) of `fast.pack_conv.depth_major_to_nhwc(y)` in one transpose: [B,D,H,W,d] → [B,rH,rW,d·D/r²]."""
  b, depth, h, w, d = y.shape
  if depth % (r * r):
    raise ValueError(f'pixel_shuffle: x: channels must be a multiple of {r * r}, got depth {depth}')
  # Channel k·D + c, c = c1·r² + i·r + j, goes to pixel (r·y+i, r·x+j), channel k·D/r² + c1.
  y = y.reshape(b, depth // (r * r), r, r, h, w, d).transpose(0, 4, 2, 5, 3, 6, 1)
  return y.reshape(b, h * r, w * r, d * depth // (r * r))
