"""Renders a small synthetic driving sequence in the KITTI raw layout.

    python tools/make_synthetic_kitti.py --output DIR [--frames 40 --height 96 --width 320 --seed 0]

Numpy ray casting of a procedural street (textured road with lane marks,
sidewalks, two building facades, boxes at known positions, sky) seen by a
camera that drives forward ~0.8 m/frame with a slowly oscillating yaw.
Geometry is exact, so consecutive frames are consistent and photometric
self-supervision can learn depth from them. Written (docs/reference.md §6.1 layout):

  DIR/2011_09_26/calib_{cam_to_cam,velo_to_cam,imu_to_velo}.txt
  DIR/2011_09_26/2011_09_26_drive_0001_sync/
      image_02/data/N.png, image_03/data/N.png   (stereo pair, baseline 0.54 m)
      oxts/data/N.txt                             (30-field GPS/IMU packets → the same poses)
      velodyne_points/data/N.bin                  (lidar-like scan, float32 x,y,z,r)
      proj_depth/velodyne/image_0X/N.npz          (sparse, key velodyne_depth)
      proj_depth/groundtruth/image_0X/N.png       (dense, uint16 depth·256; sky = 0)
  DIR/splits/{train,val,test}.txt                 (Eigen-style lines)

Intrinsics are KITTI-like: fx = 0.58·W, fy = 1.92·H, cx = W/2, cy = H/2.
Frames every 5th from index 2 go to val, every 5th from index 4 to test,
the rest to train (a context-free border frame is harmless: the reader
drops it).
"""
import os
import sys
import time

import numpy as np
from absl import flags
from PIL import Image

from packnet_jax import cli

DATE = '2011_09_26'
DRIVE = DATE + '_drive_0001_sync'
CAM_HEIGHT = 1.65
BASELINE = 0.54
SKY = 1e9
# cam ← imu rotation of the usual KITTI rig: cam x = −imu y, y = −imu z, z = imu x.
CAM_FROM_VEHICLE = np.array([[0., -1., 0.], [0., 0., -1.], [1., 0., 0.]])
VELO_T = np.array([0.0, -0.08, -0.27])      # velo → cam translation
IMU_T = np.array([-0.81, 0.32, -0.80])      # imu → velo translation
LAT0, LON0, ALT0 = 49.011, 8.4236, 112.0
EARTH_RADIUS = 6378137.0


# --------------------------------------------------------------------------- texture
class Noise:
  """Multi-octave value noise on a random lattice (deterministic per seed)."""

  def __init__(self, rng, size=128):
    self.table = rng.random((size, size)).astype(np.float32)
    self.size = size

  def __call__(self, u, v, base=1.0, octaves=4):
    out = np.zeros_like(u, dtype=np.float32)
    amp, freq, total = 1.0, base, 0.0
    for o in range(octaves):
      x, y = u * freq + 17.3 * o, v * freq + 5.1 * o
      x0, y0 = np.floor(x), np.floor(y)
      fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
      i0, j0 = x0.astype(np.int64) % self.size, y0.astype(np.int64) % self.size
      i1, j1 = (i0 + 1) % self.size, (j0 + 1) % self.size
      t = self.table
      val = (t[i0, j0] * (1 - fx) * (1 - fy) + t[i1, j0] * fx * (1 - fy) +
             t[i0, j1] * (1 - fx) * fy + t[i1, j1] * fx * fy)
      out += amp * val
      total += amp
      amp *= 0.55
      freq *= 2.1
    return out / total


# --------------------------------------------------------------------------- scene
def make_scene(rng, length):
  """Boxes (min corner, max corner, colour) along both sides of the road."""
  boxes = []
  z = 8.0
  while z < length + 60:
    side = rng.choice([-1, 1])
    x = side * rng.uniform(2.6, 5.0)
    w, d, h = rng.uniform(0.8, 2.0), rng.uniform(1.0, 3.0), rng.uniform(0.8, 2.5)
    lo = np.array([x - w / 2, CAM_HEIGHT - h, z])
    hi = np.array([x + w / 2, CAM_HEIGHT, z + d])
    boxes.append((lo, hi, rng.uniform(0.25, 0.9, size=3)))
    z += rng.uniform(4.0, 9.0)
  return boxes


def trajectory(frames):
  """Camera→world poses [F,4,4]: forward motion with a slow yaw oscillation."""
  poses = np.zeros((frames, 4, 4))
  pos = np.zeros(3)
  for f in range(frames):
    yaw = 0.06 * np.sin(2 * np.pi * f / 30.0)
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # Rotation about the (down) y axis.
    poses[f, :3, :3], poses[f, :3, 3], poses[f, 3, 3] = R, pos, 1.0
    pos = pos + R @ np.array([0.0, 0.0, 0.8])
  return poses


def cast(origin, R, cam_dirs, boxes, walls_x=(-7.0, 7.0), wall_top=-4.5):
  """Ray casting from one camera. cam_dirs [N,3] are camera-frame rays with z = 1
  (so t = depth); R rotates them to the world. → (depth, surface id, hit point)."""
  dirs = cam_dirs[:, :1] * R[:, 0] + cam_dirs[:, 1:2] * R[:, 1] + R[:, 2]  # = cam_dirs @ R.T (z = 1)
  n = len(dirs)
  t_best = np.full(n, SKY)
  sid = np.zeros(n, np.int32)  # 0 sky, 1 ground, 2 walls, 3+ boxes
  with np.errstate(divide='ignore', invalid='ignore'):
    t = (CAM_HEIGHT - origin[1]) / dirs[:, 1]
    ok = (t > 0) & (t < t_best)
    t_best[ok], sid[ok] = t[ok], 1
    for wx in walls_x:
      t = (wx - origin[0]) / dirs[:, 0]
      y = origin[1] + t * dirs[:, 1]
      ok = (t > 0) & (t < t_best) & (y > wall_top)
      t_best[ok], sid[ok] = t[ok], 2
    for b, (lo, hi, _) in enumerate(boxes):
      # Cull: only rays inside the image-plane bounding box of the box corners.
      corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
      cc = (corners - origin) @ R  # world → camera
      if (cc[:, 2] <= 0.05).all():
        continue
      if (cc[:, 2] > 0.05).all():
        a, bb = cc[:, 0] / cc[:, 2], cc[:, 1] / cc[:, 2]
        sel = np.nonzero((cam_dirs[:, 0] >= a.min()) & (cam_dirs[:, 0] <= a.max()) &
                         (cam_dirs[:, 1] >= bb.min()) & (cam_dirs[:, 1] <= bb.max()))[0]
      else:
        sel = np.arange(n)
      if not len(sel):
        continue
      d = dirs[sel]
      t0, t1 = (lo - origin) / d, (hi - origin) / d
      tmin = np.nanmax(np.minimum(t0, t1), axis=1)
      tmax = np.nanmin(np.maximum(t0, t1), axis=1)
      ok = (tmax >= tmin) & (tmin > 0) & (tmin < t_best[sel])
      t_best[sel[ok]], sid[sel[ok]] = tmin[ok], 3 + b
  return t_best, sid, origin + t_best[:, None] * dirs, dirs


def shade(sid, p, dirs, boxes, noise):
  """Procedural colours [N,3] in [0,1] from surface id and world hit point."""
  col = np.zeros((len(sid), 3), np.float32)
  sky = sid == 0
  elev = np.clip(-dirs[sky, 1] / np.linalg.norm(dirs[sky], axis=1), 0, 1)
  col[sky] = np.stack([0.55 + 0.2 * elev, 0.7 + 0.15 * elev, 0.95 * np.ones_like(elev)], 1)
  g = sid == 1
  if g.any():
    x, z = p[g, 0], p[g, 2]
    n = noise(x, z, base=1.3)
    road = np.abs(x) < 4.0
    base = np.where(road[:, None], np.array([0.32, 0.32, 0.34]), np.array([0.55, 0.5, 0.42]))
    c = base * (0.55 + 0.9 * n[:, None])
    lane = road & (np.abs(np.abs(x) - 1.8) < 0.09) & (np.mod(z, 5.0) < 2.5)
    center = road & (np.abs(x) < 0.08)
    c[lane | center] = 0.92
    col[g] = c
  w = sid == 2
  if w.any():
    z, y = p[w, 2], p[w, 1]
    n = noise(z + 31.0 * np.sign(p[w, 0]), y, base=0.9)
    bricks = 0.85 + 0.15 * ((np.mod(z, 1.2) < 1.1) & (np.mod(y, 0.5) < 0.45))
    windows = (np.mod(z, 4.0) > 1.2) & (np.mod(z, 4.0) < 2.6) & (np.mod(y, 2.5) < 1.2) & (y < -0.3)
    c = np.array([0.62, 0.42, 0.33]) * (0.5 + 0.8 * n[:, None]) * bricks[:, None]
    c[windows] = np.array([0.15, 0.2, 0.3]) * (0.7 + 0.6 * n[windows, None])
    col[w] = c
  for b, (lo, hi, colour) in enumerate(boxes):
    m = sid == 3 + b
    if not m.any():
      continue
    q = p[m]
    on_x = np.minimum(np.abs(q[:, 0] - lo[0]), np.abs(q[:, 0] - hi[0])) < 1e-6
    u = np.where(on_x, q[:, 2], q[:, 0]) * 2.0
    n = noise(u + 7.0 * b, q[:, 1] * 2.0, base=1.0)
    col[m] = colour * (0.45 + 0.9 * n[:, None])
  return np.clip(col, 0, 1)


def render(pose, K, shape, boxes, noise, ss=2, offset_x=0.0):
  """(rgb uint8 [H,W,3], depth float32 [H,W] with 0 = sky) for a camera pose."""
  h, w = shape
  R, origin = pose[:3, :3], pose[:3, 3] + pose[:3, :3] @ np.array([offset_x, 0, 0])
  def rays(us, vs):  # Camera-frame rays with z = 1, so the ray parameter t is the depth.
    return np.stack([(us.ravel() - K[0, 2]) / K[0, 0], (vs.ravel() - K[1, 2]) / K[1, 1],
                     np.ones(us.size)], 1)

  # Colour: ss×ss samples per pixel (box filter anti-aliasing).
  offs = (np.arange(ss) + 0.5) / ss - 0.5
  vs, us = np.meshgrid((np.arange(h)[:, None] + offs).ravel(), (np.arange(w)[:, None] + offs).ravel(),
                       indexing='ij')  # [h·ss, w·ss], row-major → reshape(h, ss, w, ss) groups pixels.
  _, sid, p, d = cast(origin, R, rays(us, vs), boxes)
  rgb = shade(sid, p, d, boxes, noise).reshape(h, ss, w, ss, 3).mean(axis=(1, 3))
  # Depth: one ray through each pixel centre.
  vc, uc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing='ij')
  t, sid, _, _ = cast(origin, R, rays(uc, vc), boxes)
  depth = np.where(sid == 0, 0.0, t).reshape(h, w).astype(np.float32)
  return (rgb * 255 + 0.5).astype(np.uint8), depth


# --------------------------------------------------------------------------- files
def fmt(values):
  return ' '.join('%.12e' % v for v in np.ravel(values))


def write_calib(date_dir, K, shape):
  h, w = shape
  p2 = np.hstack([K, np.zeros((3, 1))])
  p3 = p2.copy()
  p3[0, 3] = -K[0, 0] * BASELINE
  lines = ['calib_time: 01-Jan-2020 00:00:00', 'corner_dist: 9.950000e-02']
  for cam, p in ((0, p2), (1, p3), (2, p2), (3, p3)):
    lines += [f'S_0{cam}: {fmt([w, h])}', f'K_0{cam}: {fmt(K)}', f'D_0{cam}: {fmt(np.zeros(5))}',
              f'R_0{cam}: {fmt(np.eye(3))}', f'T_0{cam}: {fmt([-BASELINE * (cam % 2), 0, 0])}',
              f'S_rect_0{cam}: {fmt([w, h])}', f'R_rect_0{cam}: {fmt(np.eye(3))}', f'P_rect_0{cam}: {fmt(p)}']
  open(os.path.join(date_dir, 'calib_cam_to_cam.txt'), 'w').write('\n'.join(lines) + '\n')
  open(os.path.join(date_dir, 'calib_velo_to_cam.txt'), 'w').write(
      f'calib_time: 01-Jan-2020 00:00:00\nR: {fmt(CAM_FROM_VEHICLE)}\nT: {fmt(VELO_T)}\n'
      f'delta_f: 0 0\ndelta_c: 0 0\n')
  open(os.path.join(date_dir, 'calib_imu_to_velo.txt'), 'w').write(
      f'calib_time: 01-Jan-2020 00:00:00\nR: {fmt(np.eye(3))}\nT: {fmt(IMU_T)}\n')


def imu_to_cam():
  velo2cam, imu2velo = np.eye(4), np.eye(4)
  velo2cam[:3, :3], velo2cam[:3, 3] = CAM_FROM_VEHICLE, VELO_T
  imu2velo[:3, 3] = IMU_T
  return velo2cam @ imu2velo


def oxts_packet(T_world_imu):
  """Inverse of the reader's Mercator/Euler formulas (docs/reference.md §6.1)."""
  scale = np.cos(LAT0 * np.pi / 180.0)
  ty0 = scale * EARTH_RADIUS * np.log(np.tan((90.0 + LAT0) * np.pi / 360.0))
  tx0 = scale * LON0 * np.pi * EARTH_RADIUS / 180.0
  tx, ty, tz = T_world_imu[:3, 3] + np.array([tx0, ty0, ALT0])
  lon = tx * 180.0 / (scale * np.pi * EARTH_RADIUS)
  lat = 360.0 / np.pi * np.arctan(np.exp(ty / (scale * EARTH_RADIUS))) - 90.0
  R = T_world_imu[:3, :3]
  yaw, pitch, roll = np.arctan2(R[1, 0], R[0, 0]), np.arcsin(-R[2, 0]), np.arctan2(R[2, 1], R[2, 2])
  # KITTI's 30 fields (dataformat.txt): the 6 above, then 5 velocities, 6 accelerations and
  # 6 angular rates (unused by the readers: zeros), then position / velocity accuracy and the
  # navstat, numsats, posmode, velmode, orimode status integers (plausible constants).
  motion = [0.0] * 17
  status = [0.5, 0.05, 4, 10, 4, 4, 0]
  return ' '.join(repr(float(v)) for v in [lat, lon, tz, roll, pitch, yaw] + motion) + ' ' + ' '.join(map(str, status))


def lidar_points(depth, K, rng):
  """Lidar-like scan from the dense depth: ~32 rings, every 2nd column, jittered."""
  h, w = depth.shape
  rows = np.unique(np.round(np.linspace(h * 0.35, h - 1, 32)).astype(int))
  cols = np.arange(int(rng.integers(0, 2)), w, 2)
  vv, uu = np.meshgrid(rows, cols, indexing='ij')
  z = depth[vv, uu]
  keep = (z > 0) & (z < 80) & (rng.random(z.shape) < 0.9)
  uv1 = np.stack([uu[keep], vv[keep], np.ones(keep.sum())], 1).astype(np.float64)
  return (uv1 @ np.linalg.inv(K).T) * z[keep, None]  # camera-frame points


def project_sparse(points_cam, K, shape):
  """Pixel-centre points → sparse map (nearest pixel, closest depth wins)."""
  h, w = shape
  uvw = points_cam @ K.T
  u = np.round(uvw[:, 0] / uvw[:, 2]).astype(int)
  v = np.round(uvw[:, 1] / uvw[:, 2]).astype(int)
  ok = (u >= 0) & (u < w) & (v >= 0) & (v < h) & (points_cam[:, 2] > 0)
  out = np.zeros(shape, np.float32)
  order = np.argsort(-points_cam[ok, 2])
  out[v[ok][order], u[ok][order]] = points_cam[ok, 2][order]
  return out


def generate(output, frames=40, height=96, width=320, seed=0):
  rng = np.random.default_rng(seed)
  K = np.array([[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1.0]])
  poses = trajectory(frames)
  boxes = make_scene(rng, 0.8 * frames)
  noise = Noise(rng)
  date_dir = os.path.join(output, DATE)
  drive = os.path.join(date_dir, DRIVE)
  sub = ['image_02/data', 'image_03/data', 'oxts/data', 'velodyne_points/data']
  sub += [f'proj_depth/{t}/image_0{c}' for t in ('velodyne', 'groundtruth') for c in (2, 3)]
  for s in sub:
    os.makedirs(os.path.join(drive, s), exist_ok=True)
  os.makedirs(os.path.join(output, 'splits'), exist_ok=True)
  write_calib(date_dir, K, (height, width))
  m = imu_to_cam()
  velo2cam = np.eye(4)
  velo2cam[:3, :3], velo2cam[:3, 3] = CAM_FROM_VEHICLE, VELO_T
  cam_to_velo = np.linalg.inv(velo2cam)
  world_fix = np.linalg.inv(m)  # ENU-ish world; cancels in the reader's relative pose.
  for f in range(frames):
    name = '%010d' % f
    for cam, off in ((2, 0.0), (3, BASELINE)):
      rgb, depth = render(poses[f], K, (height, width), boxes, noise, offset_x=off)
      Image.fromarray(rgb).save(os.path.join(drive, f'image_0{cam}', 'data', name + '.png'))
      gt = np.clip(np.round(depth * 256.0), 0, 65535).astype(np.uint16)
      Image.fromarray(gt).save(os.path.join(drive, 'proj_depth', 'groundtruth', f'image_0{cam}', name + '.png'))
      if cam == 2:
        pts_cam = lidar_points(depth, K, rng)
        pts_velo = pts_cam @ cam_to_velo[:3, :3].T + cam_to_velo[:3, 3]
        scan = np.hstack([pts_velo, rng.random((len(pts_velo), 1))]).astype(np.float32)
        scan.tofile(os.path.join(drive, 'velodyne_points', 'data', name + '.bin'))
      # The right camera sits BASELINE to the right: shift the same scan points.
      shifted = pts_cam - np.array([off, 0, 0])
      np.savez_compressed(os.path.join(drive, 'proj_depth', 'velodyne', f'image_0{cam}', name + '.npz'),
                          velodyne_depth=project_sparse(shifted, K, (height, width)))
    T_world_imu = world_fix @ poses[f] @ m
    with open(os.path.join(drive, 'oxts', 'data', name + '.txt'), 'w') as fh:
      fh.write(oxts_packet(T_world_imu) + '\n')
  lines = [f'{DATE}/{DRIVE}/image_02/data/{f:010d}.png' for f in range(frames)]
  val = [l for f, l in enumerate(lines) if f % 5 == 2]
  test = [l for f, l in enumerate(lines) if f % 5 == 4]
  train = [l for f, l in enumerate(lines) if f % 5 not in (2, 4)]
  for split, ls in (('train', train), ('val', val), ('test', test)):
    with open(os.path.join(output, 'splits', split + '.txt'), 'w') as fh:
      fh.write('\n'.join(ls) + '\n')
  return {'poses': poses, 'K': K}


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('output', None, 'folder to write the KITTI-raw-layout tree into', flag_values=fv,
                      required=True)
  flags.DEFINE_integer('frames', 40, 'frames of the sequence', lower_bound=3, flag_values=fv)
  flags.DEFINE_integer('height', 96, 'image height (pixels)', lower_bound=8, flag_values=fv)
  flags.DEFINE_integer('width', 320, 'image width (pixels)', lower_bound=8, flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'texture seed', flag_values=fv)
  fv(argv)
  return fv


def _run(fv):
  start = time.time()
  generate(fv.output, fv.frames, fv.height, fv.width, fv.seed)
  print(f'wrote {fv.frames} frames ({fv.height}x{fv.width}) to {fv.output} in {time.time() - start:.1f}s')


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_flags, _run, argv)


if __name__ == '__main__':
  sys.exit(main())
