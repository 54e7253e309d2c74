"""DDAD reader for the DGP JSON format, without the `dgp` package.

Subset of the DGP schema read here (TRI-ML/dgp `dgp/proto/*.proto`, JSON
with the proto field names):
  * dataset JSON (`SceneDataset`): `scene_splits` maps the `DatasetSplit`
    enum as a string key ('0' train, '1' val, '2' test, '3' train_overfit)
    to `{filenames: [scene JSON paths relative to the dataset JSON]}`.
  * scene JSON (`Scene`): `samples` (`Sample`: `id.timestamp`, `datum_keys`,
    `calibration_key`) in temporal order, and `data` (`Datum`: `id.name`
    = sensor name, `key`, `datum.image` {filename, height, width, pose} or
    `datum.point_cloud` {filename, point_format, pose}). Datum files are
    relative to the scene JSON's folder.
  * `calibration/<calibration_key>.json` in the scene folder
    (`SampleCalibration`): parallel lists `names`, `intrinsics` {fx, fy,
    cx, cy, skew}, `extrinsics` (sensor→vehicle `Pose`).
  * `Pose` = {translation {x,y,z}, rotation {qw,qx,qy,qz}}: sensor→world
    for datum poses. Missing proto3 fields mean 0 (identity quaternion if the
    whole rotation is missing).
  * lidar `.npz` holds `data`: a structured array with X, Y, Z fields or a
    plain [N, >=3] array, in the lidar frame.

GT depth = lidar points moved to world (lidar pose) then into the camera
(inverse image pose) and projected with DGP's `generate_depth_map`
convention (`projection.points_to_depth(rounding='trunc', collision='last')`).
Every (sample, camera) pair is one example (cameras are not stacked).
`pose` is the camera→world matrix of the image datum; `pose_context[c]` =
inv(pose_ctx)·pose maps target-camera points into context camera c, the same
convention as our KITTI reader (the reference's DGP reader uses the inverse).
"""
import json
import os

import numpy as np

from packnet_jax.data import image_io
from packnet_jax.data import projection

SPLITS = {'train': '0', 'val': '1', 'validation': '1', 'test': '2', 'train_overfit': '3'}


def quaternion_to_matrix(q):
  """Unit quaternion (w, x, y, z) → [3,3] rotation (normalised first)."""
  w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
  return np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def pose_to_matrix(pose):
  """DGP `Pose` JSON → 4×4 float64."""
  pose = pose or {}
  t = pose.get('translation', {})
  r = pose.get('rotation') or {'qw': 1.0}
  T = np.eye(4)
  T[:3, :3] = quaternion_to_matrix([r.get('qw', 0.0), r.get('qx', 0.0), r.get('qy', 0.0), r.get('qz', 0.0)])
  T[:3, 3] = [t.get('x', 0.0), t.get('y', 0.0), t.get('z', 0.0)]
  return T


def intrinsics_to_matrix(c):
  return np.array([[c.get('fx', 0.0), c.get('skew', 0.0), c.get('cx', 0.0)],
                   [0.0, c.get('fy', 0.0), c.get('cy', 0.0)], [0.0, 0.0, 1.0]])


def read_point_cloud(path):
  with np.load(path) as f:
    if 'data' not in f.files:
      raise ValueError(f'{path}: expected array data, found {f.files}')
    x = f['data']
  if x.dtype.fields is not None:
    return np.stack([x['X'], x['Y'], x['Z']], axis=-1).reshape(-1, 3).astype(np.float64)
  if x.ndim != 2 or x.shape[1] < 3:
    raise ValueError(f'{path}: expected point cloud [N,>=3], got shape {x.shape}')
  return x[:, :3].astype(np.float64)


def _load_json(path, what):
  if not os.path.isfile(path):
    raise ValueError(f'{path}: {what} not found')
  with open(path) as f:
    return json.load(f)


class DDADReader:
  """DGP-format reader (see module docstring).

  Args:
    path: dataset JSON (e.g. `ddad_train_val/ddad.json`).
    split: 'train' | 'val' | 'test' | 'train_overfit' (or the enum number).
    cameras: datum names, e.g. ['camera_01'] (case-insensitive).
    depth_type: lidar datum name for GT depth (e.g. 'lidar') or ''/None.
    with_pose, back_context, forward_context: as for KITTI.
  """

  def __init__(self, path, split='train', cameras=('camera_01',), depth_type=None, with_pose=False,
               back_context=0, forward_context=0):
    if not os.path.exists(path):
      raise ValueError(f'path: dataset root not found: {path}')
    dataset = _load_json(path, 'dataset JSON')
    key = SPLITS.get(str(split).lower(), str(split))
    splits = dataset.get('scene_splits', {})
    if key not in splits:
      raise ValueError(f'{path}: split {split!r} (key {key}) not in scene_splits {sorted(splits)}')
    if not cameras:
      raise ValueError('cameras: expected at least one camera datum name')
    self.cameras = [c.lower() for c in cameras]
    self.depth_type = (depth_type or '').lower() or None
    self.with_pose = with_pose
    self.back, self.forward = back_context, forward_context
    self.split = str(split)
    self.scenes = []
    base = os.path.dirname(path)
    for scene_file in splits[key].get('filenames', []):
      self.scenes.append(self._load_scene(os.path.join(base, scene_file)))
    self.items = [(s, i, c) for s, scene in enumerate(self.scenes)
                  for i in range(self.back, len(scene['samples']) - self.forward)
                  for c in range(len(self.cameras))]

  def _load_scene(self, scene_file):
    scene = _load_json(scene_file, 'scene JSON')
    directory = os.path.dirname(scene_file)
    data = {d['key']: d for d in scene.get('data', [])}
    samples = []
    for sample in scene.get('samples', []):
      by_name = {}
      for k in sample.get('datum_keys', []):
        if k not in data:
          raise ValueError(f'{scene_file}: datum key {k} of a sample missing from data')
        by_name[data[k]['id']['name'].lower()] = data[k]['datum']
      for name in self.cameras + ([self.depth_type] if self.depth_type else []):
        if name not in by_name:
          raise ValueError(f'{scene_file}: sample has no datum named {name!r} (has {sorted(by_name)})')
      calib_file = os.path.join(directory, 'calibration', sample['calibration_key'] + '.json')
      calib = _load_json(calib_file, 'calibration JSON')
      names = [n.lower() for n in calib.get('names', [])]
      cams = {}
      for name in self.cameras:
        if name not in names:
          raise ValueError(f'{calib_file}: no calibration for {name!r}')
        j = names.index(name)
        cams[name] = (intrinsics_to_matrix(calib['intrinsics'][j]), pose_to_matrix(calib['extrinsics'][j]))
      samples.append({'datums': by_name, 'calib': cams})
    return {'name': os.path.basename(directory), 'dir': directory, 'samples': samples}

  def __len__(self):
    return len(self.items)

  def _image(self, scene, i, cam):
    datum = scene['samples'][i]['datums'][cam]['image']
    return datum, pose_to_matrix(datum.get('pose'))

  def depth(self, scene, i, cam, shape):
    """Projected lidar depth [H,W,1] of camera `cam` at sample i."""
    lidar = scene['samples'][i]['datums'][self.depth_type]['point_cloud']
    points = read_point_cloud(os.path.join(scene['dir'], lidar['filename']))
    world = points @ pose_to_matrix(lidar.get('pose'))[:3, :3].T + pose_to_matrix(lidar.get('pose'))[:3, 3]
    _, cam_pose = self._image(scene, i, cam)
    world_to_cam = np.linalg.inv(cam_pose)
    points_cam = world @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    K = scene['samples'][i]['calib'][cam][0]
    return projection.points_to_depth(points_cam, K, shape, rounding='trunc', collision='last')[..., None]

  def load(self, idx):
    s, i, c = self.items[idx]
    scene, cam = self.scenes[s], self.cameras[c]
    datum, pose = self._image(scene, i, cam)
    rgb = image_io.load_rgb(os.path.join(scene['dir'], datum['filename']))
    K, extrinsics = scene['samples'][i]['calib'][cam]
    stem = os.path.splitext(os.path.basename(datum['filename']))[0]
    sample = {'idx': idx, 'filename': f'{scene["name"]}_{cam}_{stem}', 'rgb': rgb, 'intrinsics': K.copy()}
    if self.depth_type:
      sample['depth'] = self.depth(scene, i, cam, image_io.dims(rgb))
    ctx = list(range(i - self.back, i)) + list(range(i + 1, i + 1 + self.forward))
    if ctx:
      sample['rgb_context'] = [image_io.load_rgb(os.path.join(scene['dir'], self._image(scene, j, cam)[0]['filename']))
                               for j in ctx]
    if self.with_pose:
      sample['pose'] = pose.astype(np.float32)
      sample['extrinsics'] = extrinsics.astype(np.float32)
      if ctx:
        sample['pose_context'] = [(np.linalg.inv(self._image(scene, j, cam)[1]) @ pose).astype(np.float32)
                                  for j in ctx]
    return sample
