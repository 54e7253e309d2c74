"""Colour-mapped inverse depth for visualisation (numpy only, no matplotlib).

`colorize_inv_depth` follows the reference's `viz_inv_depth`: divide by the 95th
percentile (+1e-6), clip to [0, 1], apply a plasma-like colormap (dark purple →
orange → yellow, linearly interpolated between the anchors below).
"""
import numpy as np

# Anchors of a perceptually ordered purple→yellow map, RGB in [0, 255].
_ANCHORS = np.array([
    (13, 8, 135), (75, 3, 161), (125, 3, 168), (168, 34, 150), (203, 70, 121),
    (229, 107, 93), (248, 148, 65), (253, 195, 40), (240, 249, 33)], np.float32)


def apply_colormap(values):
  """values in [0,1] (any shape) → uint8 RGB (shape + (3,)); NaN maps to 0."""
  values = np.nan_to_num(np.clip(np.asarray(values, np.float32), 0.0, 1.0), nan=0.0)
  pos = values * (len(_ANCHORS) - 1)
  lo = np.minimum(pos.astype(np.int32), len(_ANCHORS) - 2)
  frac = (pos - lo)[..., None]
  rgb = _ANCHORS[lo] * (1.0 - frac) + _ANCHORS[lo + 1] * frac
  return np.round(rgb).astype(np.uint8)


def colorize_inv_depth(inv_depth, percentile=95.0):
  """[H,W] (or [H,W,1]) inverse depth → [H,W,3] uint8 colour image."""
  inv_depth = np.asarray(inv_depth, np.float32)
  if inv_depth.ndim == 3:
    inv_depth = inv_depth[..., 0]
  normalizer = np.percentile(inv_depth, percentile)
  return apply_colormap(inv_depth / (normalizer + 1e-6))
