"""DDAD (DGP JSON) reader on a tiny scene written by lib/ddad_scene.py, and the synthetic DDAD generator."""
import json

import numpy as np
import pytest
from PIL import Image

from lib import ddad_scene
from packnet_jax.data import ddad
from packnet_jax.data import source as source_lib



@pytest.fixture(scope='module')
def scene(tmp_path_factory):
  root = tmp_path_factory.mktemp('ddad')
  return root, ddad_scene.write_scene(str(root))


def test_projected_lidar_depth_at_known_points(scene):
  root, expected = scene
  reader = ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_01', 'camera_05'],
                           depth_type='lidar')
  assert len(reader) == 3 * 2
  for idx in range(len(reader)):
    _, frame, cam = reader.items[idx]
    depth = reader.load(idx)['depth'][..., 0]
    mine = [(r, col, z) for f, cm, r, col, z in expected if f == frame and cm.lower() == cam]
    assert len(mine) == 4
    for r, col, z in mine:
      np.testing.assert_allclose(depth[r, col], z, rtol=1e-5)
    # Nothing else lands in this camera except the other camera's points that happen to be visible.
    assert (depth > 0).sum() >= len(mine)


def test_structured_and_plain_point_clouds_agree(scene, tmp_path):
  root, _ = scene
  ddad_scene.write_scene(str(tmp_path), structured=True)
  name = 'scene_000/point_cloud/LIDAR/1001.npz'
  plain, structured = ddad.read_point_cloud(str(root / name)), ddad.read_point_cloud(str(tmp_path / name))
  assert plain.shape == (2 * 4 + 1, 3)
  np.testing.assert_array_equal(plain, structured)
  np.savez(tmp_path / 'bad.npz', data=np.zeros((5, 2)))
  with pytest.raises(ValueError, match=r'bad\.npz: expected point cloud data \[N,>=3\]'):
    ddad.read_point_cloud(str(tmp_path / 'bad.npz'))


def test_cameras_follow_the_sample_order_not_the_argument(scene, tmp_path):
  root, _ = scene
  forward = ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_01', 'camera_05'])
  reverse = ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['CAMERA_05', 'camera_01'])
  assert forward.items == reverse.items
  assert [cam for _, _, cam in reverse.items] == ['camera_01', 'camera_05'] * 3
  assert [reverse.load(i)['filename'] for i in range(2)] == ['scene_000_camera_01_1000', 'scene_000_camera_05_1000']
  # A dataset that lists CAMERA_05 first in its samples gives CAMERA_05 first, whatever the argument says.
  ddad_scene.write_scene(str(tmp_path), camera_order=('CAMERA_05', 'CAMERA_01'))
  swapped = ddad.DDADReader(str(tmp_path / 'ddad.json'), 'train', cameras=['camera_01', 'camera_05'])
  assert [cam for _, _, cam in swapped.items] == ['camera_05', 'camera_01'] * 3
  # Green encodes the camera (0 for CAMERA_01, 100 for CAMERA_05).
  assert [swapped.load(i)['rgb'].getpixel((0, 0))[1] for i in range(2)] == [100, 0]


def test_intrinsics_context_and_relative_pose(scene):
  root, _ = scene
  reader = ddad.DDADReader(str(root / 'ddad.json'), 'val', cameras=['CAMERA_05'], with_pose=True,
                           back_context=1, forward_context=1)
  assert len(reader) == 1  # only the middle frame has both neighbours
  sample = source_lib.SampleSource(reader, 'validation')(0)
  fx, fy, cx, cy = ddad_scene.K['CAMERA_05']
  np.testing.assert_allclose(sample['intrinsics'], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
  # Images encode the frame: 40·f + 10 in red, 100·camera in green.
  np.testing.assert_allclose(sample['rgb'][0, 0], [50 / 255, 100 / 255, 50 / 255], atol=1e-7)
  np.testing.assert_allclose(sample['rgb_context'][:, 0, 0, 0], [10 / 255, 90 / 255], atol=1e-7)
  T1, _ = ddad_scene.camera_pose(1, 'CAMERA_05')
  for ctx_frame, pc in zip((0, 2), sample['pose_context']):
    Tc, _ = ddad_scene.camera_pose(ctx_frame, 'CAMERA_05')
    np.testing.assert_allclose(pc, np.linalg.inv(Tc) @ T1, atol=1e-5)  # target → context camera


def test_missing_split_and_camera_errors(scene):
  root, _ = scene
  with pytest.raises(ValueError, match='split'):
    ddad.DDADReader(str(root / 'ddad.json'), 'test', cameras=['camera_01'])
  with pytest.raises(ValueError, match="sample 0 has no datum named 'camera_09'"):
    ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_09'])
  with pytest.raises(ValueError, match='not found'):
    ddad.DDADReader(str(root / 'nope.json'), 'train')
  with pytest.raises(ValueError, match='expected distinct camera names'):
    ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_01', 'CAMERA_01'])


def test_missing_calibration_names_the_file_and_camera(tmp_path):
  ddad_scene.write_scene(str(tmp_path), calibrated=('CAMERA_01',))
  ddad.DDADReader(str(tmp_path / 'ddad.json'), 'train', cameras=['camera_01'])  # the calibrated one is fine
  calib = tmp_path / 'scene_000' / 'calibration' / 'c0ffee.json'
  with pytest.raises(ValueError) as e:
    ddad.DDADReader(str(tmp_path / 'ddad.json'), 'train', cameras=['camera_01', 'camera_05'])
  assert str(e.value) == (f"{calib}: expected a calibration entry for camera 'camera_05' in names, "
                          "found ['LIDAR', 'CAMERA_01']")
  calib.write_text('{"names": ["CAMERA_01"')
  with pytest.raises(ValueError, match=f'{calib}: calibration JSON is not valid JSON'):
    ddad.DDADReader(str(tmp_path / 'ddad.json'), 'train', cameras=['camera_01'])


def test_quaternion_matches_axis_angle():
  R = ddad.quaternion_to_matrix(ddad_scene._quat_y(0.4))
  c, s = np.cos(0.4), np.sin(0.4)
  np.testing.assert_allclose(R, [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-12)


# --------------------------------------------------------------------------- synthetic DDAD generator
@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
  import make_synthetic_ddad as gen  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp('synthetic_ddad')
  return gen, root, gen.generate(str(root), frames=5, val_frames=2, height=40, width=64, seed=3)


def test_generator_writes_the_dgp_layout(synthetic):
  _, root, _ = synthetic
  dataset = json.loads((root / 'ddad.json').read_text())
  assert sorted(dataset['scene_splits']) == ['0', '1']
  scene_file = dataset['scene_splits']['0']['filenames'][0]
  assert scene_file.startswith('000000/scene_') and scene_file.endswith('.json')
  scene = json.loads((root / scene_file).read_text())
  assert len(scene['samples']) == 5 and len(scene['data']) == 5 * 3
  datums = {d['key']: d for d in scene['data']}
  first = [datums[k] for k in scene['samples'][0]['datum_keys']]
  assert [d['id']['name'] for d in first] == ['LIDAR', 'CAMERA_01', 'CAMERA_05']
  image = first[1]['datum']['image']
  assert (image['height'], image['width'], image['channels']) == (40, 64, 3)
  assert image['filename'].startswith('rgb/CAMERA_01/') and set(image['pose']) == {'rotation', 'translation'}
  assert Image.open(root / '000000' / image['filename']).size == (64, 40)
  calib = json.loads((root / '000000' / 'calibration' / (scene['samples'][0]['calibration_key'] + '.json'))
                     .read_text())
  assert calib['names'] == ['LIDAR', 'CAMERA_01', 'CAMERA_05']
  assert set(calib['intrinsics'][1]) == {'fx', 'fy', 'cx', 'cy', 'skew'}
  assert calib['intrinsics'][1] != calib['intrinsics'][2] and calib['extrinsics'][1] != calib['extrinsics'][2]
  with np.load(root / '000000' / first[0]['datum']['point_cloud']['filename']) as f:
    assert f['data'].dtype == np.float32 and f['data'].ndim == 2 and f['data'].shape[1] == 4
    assert len(f['data']) > 5000


def test_generator_lidar_poses_and_calibration_are_consistent(synthetic):
  gen, root, truth = synthetic
  reader = ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_05', 'camera_01'],
                           depth_type='lidar', with_pose=True, back_context=1, forward_context=1)
  assert len(reader) == (5 - 2) * 2
  train = truth['train']
  for idx in range(len(reader)):
    _, f, cam = reader.items[idx]
    sample = reader.load(idx)
    name = cam.upper()
    np.testing.assert_allclose(sample['intrinsics'], train['intrinsics'][name])
    np.testing.assert_allclose(sample['extrinsics'], train['extrinsics'][name], atol=1e-6)
    T = train['camera_pose']
    np.testing.assert_allclose(sample['pose'], T[(f, name)], atol=1e-4)
    np.testing.assert_allclose(sample['pose_context'][1], np.linalg.inv(T[(f + 1, name)]) @ T[(f, name)],
                               atol=1e-5)
    # Lidar depth projected by the reader agrees with the renderer's depth at pixel centres: DGP's
    # truncation puts a point seen in [u, u+1) x [v, v+1) at (u, v), so on a smooth surface its depth
    # lies between the rendered depths at the four corners (occlusion edges between lidar and camera
    # are the exceptions).
    lidar, dense = sample['depth'][..., 0], train['dense_depth'][(f, name)]
    corners = np.pad(np.where(dense > 0, dense, np.inf), ((0, 1), (0, 1)), mode='edge')
    corners = np.stack([corners[:-1, :-1], corners[1:, :-1], corners[:-1, 1:], corners[1:, 1:]])
    hit = lidar > 0
    assert hit.sum() > 0.3 * lidar.size
    inside = (lidar[hit] >= 0.995 * corners.min(0)[hit]) & (lidar[hit] <= 1.005 * corners.max(0)[hit])
    assert inside.mean() > 0.93
  # The vehicle frame is on the ground, x forward: cameras at their mounting height, front camera looks ahead.
  pose = train['camera_pose'][(0, 'CAMERA_01')]
  np.testing.assert_allclose(pose[2, 3], gen.CAMERAS['CAMERA_01']['position'][2], atol=1e-9)
  np.testing.assert_allclose(pose[:3, 2], [1, 0, 0], atol=1e-9)


def test_generator_is_deterministic(synthetic, tmp_path):
  gen, root, _ = synthetic
  gen.generate(str(tmp_path), frames=5, val_frames=2, height=40, width=64, seed=3)
  files = sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())
  assert files == sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*') if p.is_file())
  for rel in files:
    assert (root / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_quaternion_round_trip(synthetic):
  gen, _, _ = synthetic
  rng = np.random.default_rng(0)
  for q in list(rng.normal(size=(20, 4))) + [np.array([0., 1., 0., 0.]), np.array([0., 0., 0., 1.])]:
    q = q / np.linalg.norm(q)
    R = ddad.quaternion_to_matrix(q)
    np.testing.assert_allclose(ddad.quaternion_to_matrix(gen.matrix_to_quaternion(R)), R, atol=1e-12)
