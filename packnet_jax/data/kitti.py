"""KITTI raw reader (the reference's `KITTIDataset`, docs/reference.md §6.1).

`KITTIReader(root, split_file, ...)` indexes a split file once; `load(i)`
returns a *raw* sample (PIL images, float64 intrinsics, depth [H,W,1] with
0/−1 invalid, float32 poses) that `transforms` turns into arrays.
"""
import glob
import logging
import os

import numpy as np

from packnet_jax.data import image_io
from packnet_jax.data import kitti_calib
from packnet_jax.data import projection

CAMERA_FOLDERS = ('image_02', 'image_03')
PNG_DEPTH_TYPES = ('groundtruth',)


def depth_file(image_file, depth_type):
  """image_0X/data/N.png → proj_depth/<type>/image_0X/N.{npz|png}."""
  for cam in CAMERA_FOLDERS:
    if cam in image_file:
      path = image_file.replace(f'{cam}/data', f'proj_depth/{depth_type}/{cam}')
      if depth_type not in PNG_DEPTH_TYPES:
        path = path.replace('png', 'npz')
      return path
  return None


def velodyne_file(image_file):
  """image_0X/data/N.png → velodyne_points/data/N.bin."""
  for cam in CAMERA_FOLDERS:
    if cam in image_file:
      return image_file.replace(cam, 'velodyne_points').replace('.png', '.bin')
  return None


def read_depth(path):
  """npz (key `velodyne_depth`) → float32; PNG uint16/256 with 0 → −1."""
  if path.endswith('.npz'):
    with np.load(path) as f:
      if 'velodyne_depth' not in f.files:
        raise ValueError(f'{path}: expected array velodyne_depth, found {f.files}')
      return f['velodyne_depth'].astype(np.float32)[..., None]
  if path.endswith('.png'):
    from PIL import Image
    with Image.open(path) as im:
      png = np.array(im, dtype=np.int64)
    if png.max() <= 255:
      raise ValueError(f'{path}: expected a uint16 depth PNG (values > 255)')
    depth = png.astype(np.float64) / 256.0
    depth[png == 0] = -1.0
    return depth[..., None]
  raise ValueError(f'{path}: unknown depth file type (expected .npz or .png)')


def _sibling(idx, file):
  base, ext = os.path.splitext(os.path.basename(file))
  return os.path.join(os.path.dirname(file), str(idx).zfill(len(base)) + ext)


class KITTIReader:
  """Indexes a KITTI split and loads raw samples.

  Args:
    root: dataset root (date folders inside).
    split_file: split path (absolute, or relative to root); first token of a line.
    depth_type: '' / None (no depth), 'velodyne', 'groundtruth', ... (docs/reference.md §6.1).
    input_depth_type: same for `input_depth`.
    with_pose: add OXTS poses (`pose`, `pose_context`).
    back_context, forward_context, strides: context frames as the reference.
    project_velodyne: when a `proj_depth/velodyne` npz is missing but the
      scan `velodyne_points/data/N.bin` exists, project it on the fly.
    on_error: 'raise' (default) or 'skip' split lines whose image is missing
      (the number skipped is logged and kept in `self.skipped`).
  """

  def __init__(self, root, split_file, depth_type=None, input_depth_type=None, with_pose=False,
               back_context=0, forward_context=0, strides=(1,), project_velodyne=False,
               on_error='raise'):
    if not os.path.isdir(root):
      raise ValueError(f'path: dataset root not found: {root}')
    split_path = split_file if os.path.isabs(split_file) else os.path.join(root, split_file)
    if not os.path.isfile(split_path):
      raise ValueError(f'split: split file not found: {split_path}')
    if back_context < 0 or forward_context < 0:
      raise ValueError(f'context: expected >= 0, got back={back_context} forward={forward_context}')
    self.root = root
    self.split = os.path.basename(split_path).split('.')[0]
    self.depth_type = depth_type or None
    self.input_depth_type = input_depth_type or None
    self.with_pose = with_pose
    self.project_velodyne = project_velodyne
    self._file_counts = {}
    self._pose_cache = {}
    self._calib_cache = {}
    self.skipped = 0

    paths = []
    with open(split_path) as f:
      for lineno, line in enumerate(f, 1):
        tokens = line.split()
        if not tokens:
          continue
        path = os.path.join(root, tokens[0])
        if not os.path.isfile(path):
          if on_error == 'skip':
            self.skipped += 1
            continue
          raise ValueError(f'{split_path}:{lineno}: image not found: {path}')
        if all(self._has_depth(path, t) for t in (self.input_depth_type, self.depth_type) if t):
          paths.append(path)
    if self.skipped:
      logging.warning('%s: skipped %d split lines with missing images', split_path, self.skipped)

    self.paths, self.context_idxs = [], []
    for stride in strides:
      for path in paths:
        ctx = self._context(path, back_context, forward_context, stride)
        if ctx is not None:
          self.paths.append(path)
          self.context_idxs.append(ctx)

  def _has_depth(self, image_file, depth_type):
    if os.path.exists(depth_file(image_file, depth_type)):
      return True
    return (self.project_velodyne and depth_type == 'velodyne' and
            os.path.exists(velodyne_file(image_file)))

  def _num_files(self, folder, ext):
    if folder not in self._file_counts:
      self._file_counts[folder] = len(glob.glob(os.path.join(folder, '*' + ext)))
    return self._file_counts[folder]

  def _context(self, path, back, forward, stride):
    """Context frame indices (backward chronological, then forward) or None."""
    if back == 0 and forward == 0:
      return []
    base, ext = os.path.splitext(os.path.basename(path))
    f_idx = int(base)
    num = self._num_files(os.path.dirname(path), ext)
    if f_idx - back * stride < 0 or f_idx + forward * stride >= num:
      return None
    backward, c = [], f_idx
    while len(backward) < back and c > 0:
      c -= stride
      if os.path.exists(_sibling(c, path)):
        backward.append(c)
    if c < 0:
      return None
    forward_idxs, c = [], f_idx
    while len(forward_idxs) < forward and c < num:
      c += stride
      if os.path.exists(_sibling(c, path)):
        forward_idxs.append(c)
    if c >= num:
      return None
    return backward[::-1] + forward_idxs

  def __len__(self):
    return len(self.paths)

  @staticmethod
  def date_dir(image_file):
    return os.path.abspath(os.path.join(image_file, '../../../..'))

  def intrinsics(self, image_file):
    date_dir = self.date_dir(image_file)
    if date_dir not in self._calib_cache:
      self._calib_cache[date_dir] = kitti_calib.read_calib_file(os.path.join(date_dir, 'calib_cam_to_cam.txt'))
    calib = self._calib_cache[date_dir]
    cam = 'image_03' if 'image_03' in image_file else 'image_02'
    key = cam.replace('image', 'P_rect')
    p = kitti_calib.require(calib, key, os.path.join(date_dir, 'calib_cam_to_cam.txt'))
    return np.reshape(p, (3, 4))[:, :3].copy()

  def pose(self, image_file):
    """Camera pose of frame f relative to frame 0 of its drive (float32)."""
    if image_file not in self._pose_cache:
      oxts = lambda f: kitti_calib.read_oxts(
          next(f.replace(c, 'oxts') for c in CAMERA_FOLDERS if c in f).replace('.png', '.txt'))
      origin = oxts(_sibling(0, image_file))
      scale = np.cos(origin[0] * np.pi / 180.0)
      T0 = kitti_calib.oxts_to_transform(origin, scale)
      Tf = kitti_calib.oxts_to_transform(oxts(image_file), scale)
      imu2cam = kitti_calib.imu_to_cam(self.date_dir(image_file))
      self._pose_cache[image_file] = (imu2cam @ np.linalg.inv(T0) @ Tf @ np.linalg.inv(imu2cam)).astype(np.float32)
    return self._pose_cache[image_file]

  def depth(self, image_file, depth_type, shape=None):
    """Depth map of `depth_type`; `shape` = (H, W) of the frame if known."""
    path = depth_file(image_file, depth_type)
    if os.path.exists(path) or not self.project_velodyne:
      return read_depth(path)
    date_dir = self.date_dir(image_file)
    cam2cam = kitti_calib.read_calib_file(os.path.join(date_dir, 'calib_cam_to_cam.txt'))
    velo2cam = kitti_calib.read_calib_file(os.path.join(date_dir, 'calib_velo_to_cam.txt'))
    if shape is None:
      shape = image_io.image_dims(image_file)  # header only: the frame is decoded once, in load()
    cam = 3 if 'image_03' in image_file else 2
    scan = projection.read_velodyne_bin(velodyne_file(image_file))
    return projection.velodyne_depth(scan, cam2cam, velo2cam, shape, cam)[..., None]

  def load(self, idx):
    path = self.paths[idx]
    sample = {
        'idx': idx,
        'filename': '%s_%010d' % (self.split, idx),
        'rgb': image_io.load_rgb(path),
        'intrinsics': self.intrinsics(path),
    }
    if self.with_pose:
      sample['pose'] = self.pose(path)
    shape = image_io.dims(sample['rgb'])
    if self.depth_type:
      sample['depth'] = self.depth(path, self.depth_type, shape)
    if self.input_depth_type:
      sample['input_depth'] = self.depth(path, self.input_depth_type, shape)
    ctx = self.context_idxs[idx]
    if ctx:
      files = [_sibling(i, path) for i in ctx]
      sample['rgb_context'] = [image_io.load_rgb(f) for f in files]
      if self.with_pose:
        sample['pose_context'] = [kitti_calib.invert_pose(self.pose(f)) @ sample['pose'] for f in files]
    return sample
