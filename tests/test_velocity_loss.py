"""Velocity loss: parity with velocity_loss.npz and closed forms."""
import jax
import numpy as np
import pytest
from lib.fixtures import load_npz
from lib import noise

from packnet_jax.losses.velocity import velocity_loss

_velocity_loss = jax.jit(velocity_loss)


@noise.parity_check()
def check_loss(dtype):
  f = noise.cast_floats(load_npz('velocity_loss.npz'), dtype)
  loss = _velocity_loss(f['pred_pose_mat'], f['gt_pose_context'])
  return [noise.Comparison('loss', loss, load_npz('velocity_loss.npz')['loss'][0], rtol=1e-6)]


def test_matches_reference_fixture():
  noise.assert_all(check_loss(np.float32))


def test_closed_form_translation_lengths():
  pred = np.tile(np.eye(4, dtype=np.float32), (1, 2, 1, 1))
  gt = pred.copy()
  pred[0, 0, :3, 3] = [3.0, 4.0, 0.0]  # |t| = 5
  pred[0, 1, :3, 3] = [0.0, 0.0, 1.0]  # |t| = 1
  gt[0, 0, :3, 3] = [0.0, 2.0, 0.0]    # |t| = 2 → |5 − 2| = 3
  gt[0, 1, :3, 3] = [0.0, -1.0, 0.0]   # |t| = 1 → 0 (direction is ignored)
  np.testing.assert_allclose(np.asarray(_velocity_loss(pred, gt)), 1.5, rtol=1e-6)


def test_rotation_is_ignored():
  f = load_npz('velocity_loss.npz')
  gt = f['gt_pose_context'].copy()
  gt[..., :3, :3] = np.eye(3, dtype=np.float32)
  np.testing.assert_allclose(np.asarray(_velocity_loss(f['pred_pose_mat'], gt)),
                             f['loss'][0], rtol=1e-6)


def test_bad_shape_raises():
  with pytest.raises(ValueError, match=r'pred_poses: expected shape \[B,N,4,4\]'):
    velocity_loss(np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), np.float32))
