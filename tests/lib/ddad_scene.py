"""Writes a tiny DDAD (DGP JSON) scene for tests: 2 cameras, 1 lidar, 3 frames.

Layout (subset of TRI-ML/dgp's schema, see packnet_jax/data/ddad.py):
  root/ddad.json                          SceneDataset: scene_splits {'0','1'}
  root/scene_000/scene_<hash>.json        Scene: samples + data (datums)
  root/scene_000/calibration/<key>.json   SampleCalibration
  root/scene_000/rgb/CAMERA_0X/<ts>.png   images that encode (frame, camera)
  root/scene_000/point_cloud/LIDAR/<ts>.npz   key 'data', float [N,4] X,Y,Z,INTENSITY
                                               (structured X,Y,Z fields with structured=True)

Lidar points are placed so that each projects to a chosen pixel centre
(+0.3 px, so DGP's truncation keeps the pixel) at a chosen depth in a chosen
camera; `write_scene` returns those expectations. Each sample lists its
datums as LIDAR then `camera_order` (default CAMERAS), so tests can check that
the reader follows the sample's order.
"""
import json
import os

import numpy as np
from PIL import Image

H, W = 40, 64
CAMERAS = ('CAMERA_01', 'CAMERA_05')
K = {'CAMERA_01': (50.0, 52.0, 31.5, 19.5), 'CAMERA_05': (40.0, 41.0, 30.0, 20.0)}


def _quat_y(angle):
  """(w, x, y, z) of a rotation by `angle` about y."""
  return np.cos(angle / 2), 0.0, np.sin(angle / 2), 0.0


def _rot(q):
  w, x, y, z = q
  return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                   [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                   [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _pose_json(t, q):
  return {'translation': {'x': t[0], 'y': t[1], 'z': t[2]},
          'rotation': {'qw': q[0], 'qx': q[1], 'qy': q[2], 'qz': q[3]}}


def camera_pose(frame, cam):
  """Camera→world (4×4) and its JSON: moving forward 1 m/frame, camera 2 yawed."""
  q = _quat_y(0.0 if cam == 'CAMERA_01' else 0.4)
  t = np.array([0.1 * frame, 0.0, 1.0 * frame]) + (0 if cam == 'CAMERA_01' else np.array([0.5, 0.0, 0.2]))
  T = np.eye(4)
  T[:3, :3], T[:3, 3] = _rot(q), t
  return T, _pose_json(t, q)


def lidar_pose(frame):
  q = _quat_y(0.1)
  t = np.array([0.0, -0.5, 1.0 * frame + 0.3])
  T = np.eye(4)
  T[:3, :3], T[:3, 3] = _rot(q), t
  return T, _pose_json(t, q)


def write_scene(root, camera_order=CAMERAS, structured=False, calibrated=CAMERAS):
  """Writes the scene; returns expectations [(frame, camera, row, col, depth)].

  Args:
    root: output folder.
    camera_order: order of the camera datums in every sample's datum_keys.
    structured: lidar `data` as a structured array (X, Y, Z, INTENSITY fields).
    calibrated: cameras that get an entry in the calibration file.
  """
  scene_dir = os.path.join(root, 'scene_000')
  os.makedirs(os.path.join(scene_dir, 'calibration'), exist_ok=True)
  calib_key = 'c0ffee'
  calib = {'names': ['LIDAR'] + list(calibrated),
           'intrinsics': [{}] + [{'fx': K[c][0], 'fy': K[c][1], 'cx': K[c][2], 'cy': K[c][3], 'skew': 0.0}
                                 for c in calibrated],
           'extrinsics': [_pose_json([0, 0, 0], (1, 0, 0, 0))] * (1 + len(calibrated))}
  json.dump(calib, open(os.path.join(scene_dir, 'calibration', calib_key + '.json'), 'w'))
  rng = np.random.default_rng(0)
  data, samples, expected = [], [], []
  for f in range(3):
    ts = 1000 + f
    keys = {}
    for c, cam in enumerate(CAMERAS):
      os.makedirs(os.path.join(scene_dir, 'rgb', cam), exist_ok=True)
      img = np.full((H, W, 3), 40 * f + 10, np.uint8)
      img[..., 1] = 100 * c
      Image.fromarray(img).save(os.path.join(scene_dir, 'rgb', cam, f'{ts}.png'))
      _, pose = camera_pose(f, cam)
      key = f'img_{f}_{c}'
      data.append({'id': {'name': cam, 'index': str(f)}, 'key': key, 'datum': {'image': {
          'filename': f'rgb/{cam}/{ts}.png', 'height': H, 'width': W, 'channels': 3, 'pose': pose}}})
      keys[cam] = key
    # Lidar: for every camera, points at chosen pixels/depths of that camera.
    points = []
    T_wl, lpose = lidar_pose(f)
    for cam in CAMERAS:
      T_wc, _ = camera_pose(f, cam)
      fx, fy, cx, cy = K[cam]
      for _ in range(4):
        row, col, z = int(rng.integers(2, H - 2)), int(rng.integers(2, W - 2)), float(rng.uniform(3, 30))
        p_cam = np.array([(col + 0.3 - cx) / fx * z, (row + 0.3 - cy) / fy * z, z, 1.0])
        points.append((np.linalg.inv(T_wl) @ T_wc @ p_cam)[:3])
        expected.append((f, cam, row, col, z))
    points.append([0.0, 0.0, -50.0])  # Behind every camera: must be dropped.
    pts = np.array(points)
    if structured:
      cloud = np.zeros(len(pts), dtype=[('X', '<f8'), ('Y', '<f8'), ('Z', '<f8'), ('INTENSITY', '<f8')])
      cloud['X'], cloud['Y'], cloud['Z'] = pts[:, 0], pts[:, 1], pts[:, 2]
    else:  # What DGP writes: a plain array whose first columns are X, Y, Z.
      cloud = np.hstack([pts, np.full((len(pts), 1), 0.5)])
    os.makedirs(os.path.join(scene_dir, 'point_cloud', 'LIDAR'), exist_ok=True)
    np.savez(os.path.join(scene_dir, 'point_cloud', 'LIDAR', f'{ts}.npz'), data=cloud)
    data.append({'id': {'name': 'LIDAR', 'index': str(f)}, 'key': f'lidar_{f}', 'datum': {'point_cloud': {
        'filename': f'point_cloud/LIDAR/{ts}.npz', 'point_format': ['X', 'Y', 'Z', 'INTENSITY'],
        'pose': lpose}}})
    samples.append({'id': {'index': str(f), 'timestamp': f'2020-01-01T00:00:0{f}Z'},
                    'datum_keys': [f'lidar_{f}'] + [keys[cam] for cam in camera_order],
                    'calibration_key': calib_key})
  scene_file = 'scene_000/scene_abc.json'
  json.dump({'name': 'scene_000', 'samples': samples, 'data': data}, open(os.path.join(root, scene_file), 'w'))
  json.dump({'metadata': {'name': 'tiny_ddad'}, 'scene_splits': {'0': {'filenames': [scene_file]},
                                                                  '1': {'filenames': [scene_file]}}},
            open(os.path.join(root, 'ddad.json'), 'w'))
  return expected
