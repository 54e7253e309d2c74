"""Renders a small synthetic multi-camera driving scene in DDAD's DGP layout.

    python tools/make_synthetic_ddad.py --output DIR [--frames 12 --val_frames 4 --height 80 --width 128
        --cameras CAMERA_01,CAMERA_05 --seed 0]

The street, its boxes and textures, and the numpy ray caster are those of
make_synthetic_kitti.py (imported from it). A car drives forward ~0.8 m per
frame with a slow yaw oscillation and carries several cameras, each with its
own intrinsics and mounting (extrinsics), and a 360° lidar whose points come
from casting rays into the same scene, so images, poses, calibration and
lidar depth are geometrically consistent. Written as DDAD is (TRI-ML/dgp
`dgp/proto/*.proto`, JSON with the proto field names):

  DIR/ddad.json                              SceneDataset: scene_splits '0' (train) and '1' (val)
  DIR/000000/scene_<sha1>.json               Scene: samples (datum_keys, calibration_key) and data
  DIR/000000/calibration/<sha1>.json         SampleCalibration: names, intrinsics, extrinsics
  DIR/000000/rgb/CAMERA_0X/<timestamp>.png   images (RGB, height x width)
  DIR/000000/point_cloud/LIDAR/<timestamp>.npz   'data': float32 [N,4] X, Y, Z, INTENSITY, lidar frame
  DIR/000001/...                             the validation scene (its own street)

Frames: DGP's world frame is x forward, y left, z up (the ground is z = 0 at
the start); the vehicle frame likewise, on the ground under the car; cameras
are x right, y down, z forward. Datum poses are sensor→world, extrinsics
sensor→vehicle. Each sample lists LIDAR first, then the cameras, as DGP's
test scenes do. The image size need not be a multiple of 32: the training
pipeline resizes to `datasets.augmentation.image_shape`.
"""
import datetime
import hashlib
import json
import os
import sys
import time

import numpy as np
from absl import flags
from PIL import Image

import make_synthetic_kitti as street  # tools/ (this script's folder) is first on sys.path
from packnet_jax import cli

# Camera table: (fx, fy) as fractions of the width, principal-point offset from the image centre
# in pixels, mounting position in the vehicle frame (m) and yaw (rad, left positive).
CAMERAS = {
    'CAMERA_01': dict(focal=(0.95, 0.95), offset=(1.5, -2.0), position=(1.70, 0.00, 1.55), yaw=0.0),
    'CAMERA_05': dict(focal=(0.55, 0.56), offset=(-2.0, 1.0), position=(1.55, 0.35, 1.50), yaw=0.75),
    'CAMERA_06': dict(focal=(0.55, 0.56), offset=(2.5, 0.5), position=(1.55, -0.35, 1.50), yaw=-0.75),
}
LIDAR_POSITION = (1.2, 0.0, 1.9)
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-24.0, 8.0, 40))   # 40 rings
LIDAR_AZIMUTH_STEP = np.deg2rad(0.75)
LIDAR_MAX_RANGE = 150.0
START_US = 1_577_836_800_000_000   # 2020-01-01T00:00:00Z in microseconds
FRAME_US = 100_000                 # 10 Hz, as DDAD

# DGP axes (forward, left, up) from the renderer's camera-like axes (right, down, forward).
FLU_FROM_RDF = np.array([[0., 0., 1.], [-1., 0., 0.], [0., -1., 0.]])


def _rigid(R, t):
  T = np.eye(4)
  T[:3, :3], T[:3, 3] = R, t
  return T


def _yaw(angle):
  """Rotation about the up (z) axis of a forward-left-up frame."""
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.], [s, c, 0.], [0., 0., 1.]])


# World (DGP) ← renderer world: axes swapped, ground (renderer y = CAM_HEIGHT) moved to z = 0.
WORLD_FROM_RENDER = _rigid(FLU_FROM_RDF, [0.0, 0.0, street.CAM_HEIGHT])
# Vehicle frame ← the renderer trajectory's camera-like frame, whose origin is CAM_HEIGHT above ground.
RDF_VEHICLE = _rigid(FLU_FROM_RDF.T, [0.0, street.CAM_HEIGHT, 0.0])


def camera_extrinsics(name):
  """Camera→vehicle [4,4] of a camera in the table."""
  spec = CAMERAS[name]
  return _rigid(_yaw(spec['yaw']) @ FLU_FROM_RDF, spec['position'])


def camera_intrinsics(name, shape):
  """K [3,3] of a camera in the table for images of shape (H, W)."""
  h, w = shape
  spec = CAMERAS[name]
  fx, fy = spec['focal'][0] * w, spec['focal'][1] * w
  cx, cy = (w - 1) / 2 + spec['offset'][0], (h - 1) / 2 + spec['offset'][1]
  return np.array([[fx, 0., cx], [0., fy, cy], [0., 0., 1.]])


def lidar_extrinsics():
  return _rigid(np.eye(3), LIDAR_POSITION)


def vehicle_poses(frames):
  """Vehicle→world [F,4,4] along the synthetic street's trajectory."""
  return np.stack([WORLD_FROM_RENDER @ p @ RDF_VEHICLE for p in street.trajectory(frames)])


def matrix_to_quaternion(R):
  """[3,3] rotation → (w, x, y, z) with w >= 0."""
  m = np.asarray(R, dtype=np.float64)
  trace = np.trace(m)
  if trace > 0:
    s = 2.0 * np.sqrt(1.0 + trace)
    q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
  else:
    i = int(np.argmax(np.diag(m)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
    q = [0.0] * 4
    q[0] = (m[k, j] - m[j, k]) / s
    q[1 + i] = 0.25 * s
    q[1 + j] = (m[j, i] + m[i, j]) / s
    q[1 + k] = (m[k, i] + m[i, k]) / s
  q = np.array(q)
  return q if q[0] >= 0 else -q


def pose_json(T):
  """4×4 rigid transform → DGP `Pose` JSON."""
  w, x, y, z = matrix_to_quaternion(T[:3, :3])
  tx, ty, tz = T[:3, 3]
  return {'rotation': {'qw': float(w), 'qx': float(x), 'qy': float(y), 'qz': float(z)},
          'translation': {'x': float(tx), 'y': float(ty), 'z': float(tz)}}


def _sha1(text):
  return hashlib.sha1(text.encode()).hexdigest()


def _timestamp(us):
  stamp = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=int(us))
  return stamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)


def lidar_scan(T_world_lidar, boxes, rng):
  """Lidar-frame points [N,4] (X, Y, Z, INTENSITY) of one 360° sweep into the street.

  Rays are cast in four 90° sectors, each as a virtual camera looking along the
  sector's centre, because the renderer's caster takes z = 1 camera rays.
  """
  T_render_lidar = np.linalg.inv(WORLD_FROM_RENDER) @ T_world_lidar
  az = np.arange(-np.pi, np.pi, LIDAR_AZIMUTH_STEP)
  el_grid, az_grid = np.meshgrid(LIDAR_ELEVATIONS, az, indexing='ij')
  dirs = np.stack([np.cos(el_grid) * np.cos(az_grid), np.cos(el_grid) * np.sin(az_grid),
                   np.sin(el_grid)], -1).reshape(-1, 3)   # lidar frame (forward, left, up)
  sector = np.floor((np.arctan2(dirs[:, 1], dirs[:, 0]) + np.pi / 4) / (np.pi / 2)).astype(int) % 4
  points = []
  for k in range(4):
    sel = dirs[sector == k]
    R_lidar_sector = _yaw(k * np.pi / 2) @ FLU_FROM_RDF   # sector frame: right, down, forward
    local = sel @ R_lidar_sector                           # rays in the sector frame (z > 0)
    local = local / local[:, 2:3]
    R_render_sector = T_render_lidar[:3, :3] @ R_lidar_sector
    depth, sid, hit, _ = street.cast(T_render_lidar[:3, 3], R_render_sector, local, boxes)
    keep = (sid > 0) & (depth * np.linalg.norm(local, axis=1) < LIDAR_MAX_RANGE)
    hit_lidar = (hit[keep] - T_render_lidar[:3, 3]) @ T_render_lidar[:3, :3]
    points.append(hit_lidar)
  points = np.concatenate(points)
  intensity = rng.random((len(points), 1))
  return np.hstack([points, intensity]).astype(np.float32)


def write_scene(output, scene_name, frames, shape, cameras, seed):
  """Renders one scene folder; returns (scene JSON path relative to output, ground truth dict)."""
  rng = np.random.default_rng(seed)
  boxes = street.make_scene(rng, 0.8 * frames)
  noise = street.Noise(rng)
  scene_dir = os.path.join(output, scene_name)
  vehicle = vehicle_poses(frames)
  intrinsics = {c: camera_intrinsics(c, shape) for c in cameras}
  extrinsics = {c: camera_extrinsics(c) for c in cameras}
  calibration = {'names': ['LIDAR'] + list(cameras),
                 'intrinsics': [{'fx': 0.0, 'fy': 0.0, 'cx': 0.0, 'cy': 0.0, 'skew': 0.0}] + [
                     {'fx': float(K[0, 0]), 'fy': float(K[1, 1]), 'cx': float(K[0, 2]), 'cy': float(K[1, 2]),
                      'skew': 0.0} for K in (intrinsics[c] for c in cameras)],
                 'extrinsics': [pose_json(lidar_extrinsics())] + [pose_json(extrinsics[c]) for c in cameras]}
  calibration_key = _sha1(json.dumps(calibration, sort_keys=True))
  _write_json(os.path.join(scene_dir, 'calibration', calibration_key + '.json'), calibration)

  sensors = ['LIDAR'] + list(cameras)
  keys = {(s, f): _sha1(f'{scene_name}/{s}/{f}') for s in sensors for f in range(frames)}
  data, samples = [], []
  truth = {'camera_pose': {}, 'dense_depth': {}, 'intrinsics': intrinsics, 'extrinsics': extrinsics}
  for f in range(frames):
    stamp = START_US + f * FRAME_US
    links = {s: {'prev_key': keys[(s, f - 1)] if f > 0 else '',
                 'next_key': keys[(s, f + 1)] if f + 1 < frames else ''} for s in sensors}
    T_world_lidar = vehicle[f] @ lidar_extrinsics()
    cloud = lidar_scan(T_world_lidar, boxes, rng)
    cloud_file = f'point_cloud/LIDAR/{stamp}.npz'
    os.makedirs(os.path.join(scene_dir, 'point_cloud', 'LIDAR'), exist_ok=True)
    np.savez_compressed(os.path.join(scene_dir, cloud_file), data=cloud)
    data.append({'id': {'log': '', 'name': 'LIDAR', 'timestamp': _timestamp(stamp), 'index': str(f)},
                 'key': keys[('LIDAR', f)], **links['LIDAR'],
                 'datum': {'point_cloud': {'filename': cloud_file, 'point_format': ['X', 'Y', 'Z', 'INTENSITY'],
                                           'point_fields': [], 'annotations': {}, 'metadata': {},
                                           'pose': pose_json(T_world_lidar)}}})
    for cam in cameras:
      T_world_cam = vehicle[f] @ extrinsics[cam]
      T_render_cam = np.linalg.inv(WORLD_FROM_RENDER) @ T_world_cam
      rgb, depth = street.render(T_render_cam, intrinsics[cam], shape, boxes, noise)
      image_file = f'rgb/{cam}/{stamp}.png'
      os.makedirs(os.path.join(scene_dir, 'rgb', cam), exist_ok=True)
      Image.fromarray(rgb).save(os.path.join(scene_dir, image_file))
      truth['camera_pose'][(f, cam)] = T_world_cam
      truth['dense_depth'][(f, cam)] = depth
      data.append({'id': {'log': '', 'name': cam, 'timestamp': _timestamp(stamp), 'index': str(f)},
                   'key': keys[(cam, f)], **links[cam],
                   'datum': {'image': {'filename': image_file, 'height': shape[0], 'width': shape[1],
                                       'channels': 3, 'annotations': {}, 'metadata': {},
                                       'pose': pose_json(T_world_cam)}}})
    samples.append({'id': {'log': '', 'name': '', 'timestamp': _timestamp(stamp), 'index': str(f)},
                    'datum_keys': [keys[(s, f)] for s in sensors], 'calibration_key': calibration_key,
                    'metadata': {}})
  scene = {'name': scene_name, 'description': 'synthetic street (tools/make_synthetic_ddad.py)', 'log': '',
           'metadata': {}, 'ontologies': {}, 'samples': samples, 'data': data}
  scene_file = f'{scene_name}/scene_{_sha1(json.dumps(scene, sort_keys=True))}.json'
  _write_json(os.path.join(output, scene_file), scene)
  return scene_file, truth


def generate(output, frames=12, val_frames=4, height=80, width=128, cameras=('CAMERA_01', 'CAMERA_05'), seed=0):
  """Writes the dataset; returns {'train': truth, 'val': truth} (poses, dense depth, calibration)."""
  unknown = [c for c in cameras if c not in CAMERAS]
  if unknown or not cameras:
    raise ValueError(f'--cameras: expected names from {sorted(CAMERAS)}, got {list(cameras)}')
  shape = (height, width)
  train_file, train_truth = write_scene(output, '000000', frames, shape, cameras, seed)
  val_file, val_truth = write_scene(output, '000001', val_frames, shape, cameras, seed + 1)
  _write_json(os.path.join(output, 'ddad.json'), {
      'metadata': {'name': 'synthetic_ddad', 'version': '1', 'creation_date': '2020-01-01',
                   'creator': 'tools/make_synthetic_ddad.py', 'description': 'Synthetic DDAD-layout street',
                   'origin': 'PUBLIC', 'available_annotation_types': [], 'frame_per_second': 10.0},
      'scene_splits': {'0': {'filenames': [train_file]}, '1': {'filenames': [val_file]}}})
  return {'train': train_truth, 'val': val_truth}


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('output', None, 'folder to write the DGP tree into', flag_values=fv, required=True)
  flags.DEFINE_integer('frames', 12, 'frames of the train scene', lower_bound=3, flag_values=fv)
  flags.DEFINE_integer('val_frames', 4, 'frames of the validation scene', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('height', 80, 'image height (pixels)', lower_bound=8, flag_values=fv)
  flags.DEFINE_integer('width', 128, 'image width (pixels)', lower_bound=8, flag_values=fv)
  flags.DEFINE_list('cameras', ['CAMERA_01', 'CAMERA_05'], f'cameras, from {sorted(CAMERAS)}', flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'texture seed', flag_values=fv)
  fv(argv)
  return fv


def _run(fv):
  start = time.time()
  cameras = tuple(c.strip() for c in fv.cameras if c.strip())
  generate(fv.output, fv.frames, fv.val_frames, fv.height, fv.width, cameras, fv.seed)
  print(f'wrote {fv.frames} + {fv.val_frames} frames of {",".join(cameras)} ({fv.height}x{fv.width}) '
        f'to {fv.output} in {time.time() - start:.1f}s')


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_flags, _run, argv)


if __name__ == '__main__':
  sys.exit(main())
