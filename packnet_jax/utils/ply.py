"""Coloured point clouds as binary little-endian PLY files (x, y, z float32; red, green, blue uchar)."""
import numpy as np

from packnet_jax.utils import io as io_utils

_VERTEX = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])


def encode_ply(points, colors):
  """points [N,3] float, colors [N,3] uint8 → PLY file bytes."""
  points = np.asarray(points, np.float32).reshape(-1, 3)
  colors = np.asarray(colors, np.uint8).reshape(-1, 3)
  if len(points) != len(colors):
    raise ValueError(f'colors: expected {len(points)} rows (one per point), got {len(colors)}')
  vertices = np.empty(len(points), _VERTEX)
  for i, name in enumerate('xyz'):
    vertices[name] = points[:, i]
  for i, name in enumerate(('red', 'green', 'blue')):
    vertices[name] = colors[:, i]
  header = ('ply\nformat binary_little_endian 1.0\n'
            f'element vertex {len(points)}\n'
            'property float x\nproperty float y\nproperty float z\n'
            'property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n')
  return header.encode('ascii') + vertices.tobytes()


def write_ply(path, points, colors):
  """Writes a coloured point cloud to `path` atomically."""
  io_utils.atomic_write_bytes(path, encode_ply(points, colors))
