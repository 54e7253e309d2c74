"""Sparse depth maps from 3-D points (KITTI velodyne scans, DDAD lidar).

Convention (documented because every codebase differs):
  * points are given in the camera frame (z forward); points with z <= 0 are
    dropped;
  * u = (K·X)_x / z, v = (K·X)_y / z in pixels, pixel centres at integers;
  * `rounding='round'` (nearest pixel, used for KITTI velodyne) or `'trunc'`
    (C-style truncation toward zero, DGP's `astype(int)`, used for DDAD);
  * pixels outside [0,W)×[0,H) after rounding are dropped;
  * collisions: `'closest'` keeps the smallest depth (KITTI), `'last'` lets
    the last point in input order win (DGP's `depth[v,u] = z`).
The KITTI devkit/monodepth2 projection additionally subtracts 1 after
rounding (a MATLAB index leftover); we do not.

`write_velodyne_depth_maps` writes KITTI's maps in the TRI layout; its CLI is
`python -m packnet_jax.data.prepare velodyne`.
"""
import glob
import os

import numpy as np


def points_to_depth(points_cam, K, shape, rounding='round', collision='closest'):
  """Projects [N,3] camera-frame points with K [3,3] into a [H,W] float32 map."""
  points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
  K = np.asarray(K, dtype=np.float64)
  h, w = shape
  z = points_cam[:, 2]
  front = z > 0
  pts, z = points_cam[front], z[front]
  uvw = pts @ K.T
  uv = uvw[:, :2] / uvw[:, 2:3]
  if rounding == 'round':
    uv = np.round(uv)
  elif rounding == 'trunc':
    uv = np.trunc(uv)
  else:
    raise ValueError(f"rounding: expected 'round' or 'trunc', got {rounding!r}")
  u, v = uv[:, 0].astype(np.int64), uv[:, 1].astype(np.int64)
  inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
  u, v, z = u[inside], v[inside], z[inside]
  depth = np.zeros((h, w), dtype=np.float32)
  if collision == 'closest':
    order = np.argsort(-z, kind='stable')  # Far first, so the closest is written last.
    u, v, z = u[order], v[order], z[order]
  elif collision != 'last':
    raise ValueError(f"collision: expected 'closest' or 'last', got {collision!r}")
  depth[v, u] = z
  return depth


def read_velodyne_bin(path):
  """KITTI velodyne scan: float32 [N,4] (x, y, z, reflectance), velodyne frame."""
  scan = np.fromfile(path, dtype=np.float32)
  if scan.size % 4:
    raise ValueError(f'{path}: velodyne scan size {scan.size} is not a multiple of 4')
  return scan.reshape(-1, 4)


def velodyne_to_camera_matrix(cam2cam, velo2cam, cam=2):
  """3×4 P_rect_0X · R_rect_00 · [R|T]_velo→cam: velodyne point → image (u·z, v·z, z)."""
  from packnet_jax.data import kitti_calib  # Local import: no cycle at module load.
  r_rect = np.eye(4)
  r_rect[:3, :3] = np.asarray(cam2cam['R_rect_00']).reshape(3, 3)
  p_rect = np.asarray(cam2cam[f'P_rect_0{cam}']).reshape(3, 4)
  velo = kitti_calib.transform_from_rot_trans(velo2cam['R'], velo2cam['T'])
  return p_rect @ r_rect @ velo


def velodyne_depth(scan, cam2cam, velo2cam, shape, cam=2):
  """Sparse [H,W] depth for camera `cam` from a velodyne scan (KITTI convention)."""
  proj = velodyne_to_camera_matrix(cam2cam, velo2cam, cam)
  xyz1 = np.concatenate([scan[:, :3].astype(np.float64), np.ones((len(scan), 1))], axis=1)
  # (u·z, v·z, z) are already image coordinates; project with K = identity.
  return points_to_depth(xyz1 @ proj.T, np.eye(3), shape, rounding='round', collision='closest')


def write_velodyne_depth_maps(root, cameras=(2, 3)):
  """Builds the TRI `proj_depth/velodyne` maps for every scan under `root`."""
  from packnet_jax.data import kitti_calib
  from packnet_jax.data import image_io
  scans = sorted(glob.glob(os.path.join(root, '*', '*_sync', 'velodyne_points', 'data', '*.bin')))
  written = 0
  for scan_path in scans:
    drive = os.path.dirname(os.path.dirname(os.path.dirname(scan_path)))
    date_dir = os.path.dirname(drive)
    cam2cam = kitti_calib.read_calib_file(os.path.join(date_dir, 'calib_cam_to_cam.txt'))
    velo2cam = kitti_calib.read_calib_file(os.path.join(date_dir, 'calib_velo_to_cam.txt'))
    stem = os.path.splitext(os.path.basename(scan_path))[0]
    scan = read_velodyne_bin(scan_path)
    for cam in cameras:
      image = os.path.join(drive, f'image_0{cam}', 'data', stem + '.png')
      if not os.path.exists(image):
        continue
      shape = image_io.image_dims(image)  # header only: no pixel decode
      out = os.path.join(drive, 'proj_depth', 'velodyne', f'image_0{cam}', stem + '.npz')
      os.makedirs(os.path.dirname(out), exist_ok=True)
      np.savez_compressed(out, velodyne_depth=velodyne_depth(scan, cam2cam, velo2cam, shape, cam))
      written += 1
  return written

