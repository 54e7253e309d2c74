"""KITTI raw calibration and OXTS parsing (docs/reference.md §6.1)."""
import os

import numpy as np

EARTH_RADIUS = 6378137.0


def read_calib_file(path):
  """`key: numbers` lines → {key: float64 array}; non-numeric lines skipped."""
  if not os.path.isfile(path):
    raise ValueError(f'{path}: calibration file not found')
  data = {}
  with open(path) as f:
    for line in f:
      if ':' not in line:
        continue
      key, value = line.split(':', 1)
      try:
        data[key] = np.array([float(x) for x in value.split()])
      except ValueError:
        pass
  return data


def require(calib, key, path):
  if key not in calib:
    raise ValueError(f'{path}: calibration key {key!r} missing')
  return calib[key]


def transform_from_rot_trans(R, t):
  T = np.eye(4)
  T[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
  T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
  return T


def _rot(axis, a):
  c, s = np.cos(a), np.sin(a)
  if axis == 'x':
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
  if axis == 'y':
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def oxts_to_transform(packet, scale):
  """OXTS packet (lat, lon, alt, roll, pitch, yaw, ...) → 4×4 IMU→world."""
  lat, lon, alt, roll, pitch, yaw = packet[:6]
  t = [scale * lon * np.pi * EARTH_RADIUS / 180.0,
       scale * EARTH_RADIUS * np.log(np.tan((90.0 + lat) * np.pi / 360.0)),
       alt]
  R = _rot('z', yaw).dot(_rot('y', pitch).dot(_rot('x', roll)))
  return transform_from_rot_trans(R, t)


def read_oxts(path):
  if not os.path.isfile(path):
    raise ValueError(f'{path}: oxts file not found')
  packet = np.loadtxt(path, delimiter=' ', ndmin=1)
  if packet.size < 6:
    raise ValueError(f'{path}: expected an OXTS packet with >= 6 values, got {packet.size}')
  return packet


def imu_to_cam(date_dir):
  """[R_rect_00|0] · velo2cam · imu2velo (4×4), from the date folder."""
  files = {n: os.path.join(date_dir, f'calib_{n}.txt') for n in ('cam_to_cam', 'velo_to_cam', 'imu_to_velo')}
  c2c, v2c, i2v = (read_calib_file(files[n]) for n in ('cam_to_cam', 'velo_to_cam', 'imu_to_velo'))
  velo2cam = transform_from_rot_trans(require(v2c, 'R', files['velo_to_cam']), require(v2c, 'T', files['velo_to_cam']))
  imu2velo = transform_from_rot_trans(require(i2v, 'R', files['imu_to_velo']), require(i2v, 'T', files['imu_to_velo']))
  rect = transform_from_rot_trans(require(c2c, 'R_rect_00', files['cam_to_cam']), np.zeros(3))
  return rect @ velo2cam @ imu2velo


def invert_pose(T):
  """[[Rᵀ, −Rᵀt],[0,1]] in T's dtype."""
  Tinv = np.array(T, copy=True)
  R, t = T[:3, :3], T[:3, 3]
  Tinv[:3, :3] = R.T
  Tinv[:3, 3] = -np.matmul(R.T, t)
  return Tinv
