"""DDAD reader for the DGP JSON format, without the `dgp` package.

The part of the DGP schema read here (TRI-ML/dgp `dgp/proto/*.proto`, stored
as JSON with the proto field names, as DGP's `save_pbobject_as_json` writes it):
  * dataset JSON (`SceneDataset`, e.g. `ddad.json`): `scene_splits` maps the
    `DatasetSplit` enum, as a string key ('0' train, '1' val, '2' test,
    '3' train_overfit), to `{filenames: [scene JSONs, relative to the dataset
    JSON's folder]}`.
  * scene JSON (`Scene`, `<scene>/scene_<sha1>.json`): `samples` (`Sample`:
    `id`, `datum_keys`, `calibration_key`) in temporal order, and `data`
    (`Datum`: `id.name` = sensor name such as 'CAMERA_01' or 'LIDAR', `key`,
    `datum.image` {filename, height, width, channels, pose} or
    `datum.point_cloud` {filename, point_format, pose}). Datum files are
    relative to the scene JSON's folder: `rgb/CAMERA_01/<timestamp>.png`,
    `point_cloud/LIDAR/<timestamp>.npz`.
  * `<scene>/calibration/<calibration_key>.json` (`SampleCalibration`):
    parallel lists `names`, `intrinsics` {fx, fy, cx, cy, skew} and
    `extrinsics` (sensor→vehicle `Pose`).
  * `Pose` = {translation {x,y,z}, rotation {qw,qx,qy,qz}}; a datum's pose
    is sensor→world (the scene's local frame). Missing proto3 fields mean 0
    (the identity rotation if the whole rotation is missing).
  * lidar `.npz`: key `data`, a float array [N, C] whose first three columns
    are X, Y, Z in the lidar frame (DGP keeps `data[:, :3]`); a structured
    array with X, Y, Z fields is accepted too.
Sensor names are matched case-insensitively and reported in lower case, as
DGP does ('camera_01', 'lidar').

GT depth = lidar points moved to the world (lidar pose), then into the camera
(inverse image pose), projected with DGP's `generate_depth_map` convention
(`projection.points_to_depth(rounding='trunc', collision='last')`) at the
stored image size.

Cameras: every (sample, camera) pair is one example, and the cameras of a
sample come in the order of that sample's `datum_keys` (the dataset's order),
whatever the order of the `cameras` argument. This is DGP's original
(v0.1) order; DGP v1.0+ (which the reference was last adapted to) orders the
selected names sorted instead; on DDAD, whose samples list the cameras by
number, both agree. The reference stacks the cameras of one sample into one
batch of batch size 1 instead; we keep one example per (sample, camera), so
the batch size and shuffling work as for single-camera data.

`pose` is the camera→world matrix of the image datum; `pose_context[c]` =
inv(pose_ctx)·pose maps target-camera points into context camera c, the same
convention as our KITTI reader (the reference's DGP reader uses the inverse).
`filename` is '<scene folder>_<camera>_<image stem>' (the eval runner reads
the camera back from it).
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
  """Lidar-frame points [N,3] float64 from a DGP point-cloud `.npz`."""
  if not os.path.isfile(path):
    raise ValueError(f'{path}: point cloud file not found')
  try:
    with np.load(path) as f:
      if 'data' not in f.files:
        raise ValueError(f'{path}: expected an array named data, found {f.files}')
      x = f['data']
  except (OSError, EOFError) as e:  # Not a zip / truncated.
    raise ValueError(f'{path}: cannot read point cloud npz ({type(e).__name__}: {e})') from None
  if x.dtype.fields is not None:
    if not {'X', 'Y', 'Z'} <= set(x.dtype.fields):
      raise ValueError(f'{path}: expected fields X, Y, Z in data, found {list(x.dtype.fields)}')
    return np.stack([x['X'], x['Y'], x['Z']], axis=-1).reshape(-1, 3).astype(np.float64)
  if x.ndim != 2 or x.shape[1] < 3:
    raise ValueError(f'{path}: expected point cloud data [N,>=3] (X, Y, Z first), got shape {x.shape}')
  return x[:, :3].astype(np.float64)


def _load_json(path, what):
  if not os.path.isfile(path):
    raise ValueError(f'{path}: {what} not found')
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: {what} is not valid JSON ({e})') from None


def _read_calibration(path, cameras):
  """{camera: (K, extrinsics)} for the requested cameras of one SampleCalibration file."""
  calib = _load_json(path, 'calibration JSON')
  names = [str(n).lower() for n in calib.get('names', [])]
  intrinsics, extrinsics = calib.get('intrinsics', []), calib.get('extrinsics', [])
  if not len(names) == len(intrinsics) == len(extrinsics):
    raise ValueError(f'{path}: expected names, intrinsics and extrinsics of equal length, got '
                     f'{len(names)}, {len(intrinsics)}, {len(extrinsics)}')
  out = {}
  for name in cameras:
    if name not in names:
      raise ValueError(f'{path}: expected a calibration entry for camera {name!r} in names, '
                       f'found {calib.get("names", [])}')
    K = intrinsics_to_matrix(intrinsics[names.index(name)])
    if K[0, 0] <= 0 or K[1, 1] <= 0:
      raise ValueError(f'{path}: expected intrinsics fx, fy > 0 for camera {name!r}, got '
                       f'fx={K[0, 0]}, fy={K[1, 1]}')
    out[name] = (K, pose_to_matrix(extrinsics[names.index(name)]))
  return out


class DDADReader:
  """DGP-format reader (see module docstring).

  Args:
    path: dataset JSON (e.g. `DDAD/ddad.json`).
    split: 'train' | 'val' | 'test' | 'train_overfit' (or the enum number).
    cameras: datum names, e.g. ['camera_01', 'camera_05'] (case-insensitive;
      the order does not matter: each sample gives them in its own order).
    depth_type: lidar datum name for GT depth (e.g. 'lidar') or ''/None.
    with_pose, back_context, forward_context: as for KITTI.
  """

  def __init__(self, path, split='train', cameras=('camera_01',), depth_type=None, with_pose=False,
               back_context=0, forward_context=0):
    if not os.path.exists(path):
      raise ValueError(f'path: dataset root not found: {path}')
    if os.path.isdir(path):
      raise ValueError(f'{path}: expected the dataset JSON file (e.g. ddad.json), got a folder')
    dataset = _load_json(path, 'dataset JSON')
    key = SPLITS.get(str(split).lower(), str(split))
    splits = dataset.get('scene_splits', {})
    if key not in splits:
      raise ValueError(f'{path}: split {split!r} (key {key}) not in scene_splits {sorted(splits)}')
    if not cameras:
      raise ValueError('cameras: expected at least one camera datum name')
    self.cameras = [c.lower() for c in cameras]
    if len(set(self.cameras)) != len(self.cameras):
      raise ValueError(f'cameras: expected distinct camera names, got {list(cameras)}')
    self.depth_type = (depth_type or '').lower() or None
    self.with_pose = with_pose
    self.back, self.forward = back_context, forward_context
    self.split = str(split)
    self.scenes = []
    base = os.path.dirname(path)
    for scene_file in splits[key].get('filenames', []):
      self.scenes.append(self._load_scene(os.path.join(base, scene_file)))
    # (scene, sample, camera name); cameras in each sample's datum_keys order.
    self.items = [(s, i, cam) for s, scene in enumerate(self.scenes)
                  for i in range(self.back, len(scene['samples']) - self.forward)
                  for cam in scene['samples'][i]['cameras']]

  def _load_scene(self, scene_file):
    scene = _load_json(scene_file, 'scene JSON')
    directory = os.path.dirname(scene_file)
    data = {}
    for d in scene.get('data', []):
      if 'key' not in d or 'name' not in d.get('id', {}) or 'datum' not in d:
        raise ValueError(f'{scene_file}: expected every datum in data to have key, id.name and datum')
      data[d['key']] = d
    calibrations = {}  # One file per calibration_key (usually one per scene).
    samples = []
    for n, sample in enumerate(scene.get('samples', [])):
      by_name, order = {}, []
      for k in sample.get('datum_keys', []):
        if k not in data:
          raise ValueError(f'{scene_file}: datum key {k} of sample {n} missing from data')
        name = data[k]['id']['name'].lower()
        by_name[name] = data[k]['datum']
        order.append(name)
      for name in self.cameras + ([self.depth_type] if self.depth_type else []):
        if name not in by_name:
          raise ValueError(f'{scene_file}: sample {n} has no datum named {name!r} (has {sorted(by_name)})')
      for name in self.cameras:
        if 'image' not in by_name[name]:
          raise ValueError(f'{scene_file}: datum {name!r} of sample {n} is not an image')
      if self.depth_type and 'point_cloud' not in by_name[self.depth_type]:
        raise ValueError(f'{scene_file}: datum {self.depth_type!r} of sample {n} is not a point_cloud '
                         '(depth_type must name a lidar)')
      calib_key = sample.get('calibration_key')
      if not calib_key:
        raise ValueError(f'{scene_file}: sample {n} has no calibration_key')
      if calib_key not in calibrations:
        calibrations[calib_key] = _read_calibration(
            os.path.join(directory, 'calibration', calib_key + '.json'), self.cameras)
      samples.append({'datums': by_name, 'calib': calibrations[calib_key],
                      'cameras': [name for name in order if name in self.cameras]})
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
    lidar_to_world = pose_to_matrix(lidar.get('pose'))
    world = points @ lidar_to_world[:3, :3].T + lidar_to_world[:3, 3]
    _, cam_pose = self._image(scene, i, cam)
    world_to_cam = np.linalg.inv(cam_pose)
    points_cam = world @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    K = scene['samples'][i]['calib'][cam][0]
    return projection.points_to_depth(points_cam, K, shape, rounding='trunc', collision='last')[..., None]

  def load(self, idx):
    s, i, cam = self.items[idx]
    scene = self.scenes[s]
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
