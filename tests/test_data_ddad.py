"""DDAD (DGP JSON) reader on a tiny scene written by ddad_helper."""
import numpy as np
import pytest

import ddad_helper
from packnet_jax.data import ddad
from packnet_jax.data import source as source_lib


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
  root = tmp_path_factory.mktemp('ddad')
  return root, ddad_helper.write_scene(str(root))


def test_projected_lidar_depth_at_known_points(scene):
  root, expected = scene
  reader = ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_01', 'camera_05'],
                           depth_type='lidar')
  assert len(reader) == 3 * 2
  for idx in range(len(reader)):
    s, frame, c = reader.items[idx]
    cam = ddad_helper.CAMERAS[c]
    depth = reader.load(idx)['depth'][..., 0]
    mine = [(r, col, z) for f, cm, r, col, z in expected if f == frame and cm == cam]
    for r, col, z in mine:
      np.testing.assert_allclose(depth[r, col], z, rtol=1e-5)
    # Nothing else lands in this camera except the other camera's points that happen to be visible.
    assert (depth > 0).sum() >= len(mine)


def test_intrinsics_context_and_relative_pose(scene):
  root, _ = scene
  reader = ddad.DDADReader(str(root / 'ddad.json'), 'val', cameras=['CAMERA_05'], with_pose=True,
                           back_context=1, forward_context=1)
  assert len(reader) == 1  # only the middle frame has both neighbours
  sample = source_lib.SampleSource(reader, 'validation')(0)
  fx, fy, cx, cy = ddad_helper.K['CAMERA_05']
  np.testing.assert_allclose(sample['intrinsics'], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
  # Images encode the frame: 40·f + 10 in red, 100·camera in green.
  np.testing.assert_allclose(sample['rgb'][0, 0], [50 / 255, 100 / 255, 50 / 255], atol=1e-7)
  np.testing.assert_allclose(sample['rgb_context'][:, 0, 0, 0], [10 / 255, 90 / 255], atol=1e-7)
  T1, _ = ddad_helper.camera_pose(1, 'CAMERA_05')
  for ctx_frame, pc in zip((0, 2), sample['pose_context']):
    Tc, _ = ddad_helper.camera_pose(ctx_frame, 'CAMERA_05')
    np.testing.assert_allclose(pc, np.linalg.inv(Tc) @ T1, atol=1e-5)  # target → context camera


def test_missing_split_and_camera_errors(scene):
  root, _ = scene
  with pytest.raises(ValueError, match='split'):
    ddad.DDADReader(str(root / 'ddad.json'), 'test', cameras=['camera_01'])
  with pytest.raises(ValueError, match='camera_09'):
    ddad.DDADReader(str(root / 'ddad.json'), 'train', cameras=['camera_09'])
  with pytest.raises(ValueError, match='not found'):
    ddad.DDADReader(str(root / 'nope.json'), 'train')


def test_quaternion_matches_axis_angle():
  R = ddad.quaternion_to_matrix(ddad_helper._quat_y(0.4))
  c, s = np.cos(0.4), np.sin(0.4)
  np.testing.assert_allclose(R, [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-12)
