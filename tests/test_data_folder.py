"""Image-folder and video readers: context neighbours, intrinsics, errors."""
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from packnet_jax.data import folder
from packnet_jax.data import source as source_lib


def _frame(i, h=16, w=24):
  return np.full((h, w, 3), 20 * i + 5, np.uint8)  # the frame index, readable after lossy coding


def _index(rgb):
  return int(round((float(np.mean(rgb)) * 255 - 5) / 20))


def test_image_folder_context_neighbours(tmp_path):
  for seq, n in (('a', 5), ('b/c', 3)):
    d = tmp_path / seq
    d.mkdir(parents=True)
    for i in range(n):
      Image.fromarray(_frame(i)).save(d / f'frame_{i}.png')  # names sort numerically, not lexically
  Image.fromarray(_frame(10)).save(tmp_path / 'a' / 'frame_10.png')
  reader = folder.ImageFolderReader(str(tmp_path), back_context=1, forward_context=1)
  src = source_lib.SampleSource(reader, 'train', image_shape=(8, 12))
  seen = []
  for i in range(len(reader)):
    s = src(i)
    t = _index(s['rgb'])
    ctx = [_index(c) for c in s['rgb_context']]
    seen.append((s['filename'].split('_')[0], t, ctx))
  # Sequence a has frames 0,1,2,3,4,10 in order → targets 1..4 and neighbours by position.
  assert seen == [('a', 1, [0, 2]), ('a', 2, [1, 3]), ('a', 3, [2, 4]), ('a', 4, [3, 10]), ('b', 1, [0, 2])]
  # Default intrinsics (KITTI-like), scaled with the resize (rows by out/in).
  np.testing.assert_allclose(s['intrinsics'], [[0.58 * 12, 0, 6], [0, 1.92 * 8, 4], [0, 0, 1]], rtol=1e-6)


def test_image_folder_intrinsics_and_errors(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='no images'):
    folder.ImageFolderReader(str(tmp_path / 'empty'))
  d = tmp_path / 'seq'
  d.mkdir()
  for i in range(3):
    Image.fromarray(_frame(i)).convert('RGBA').save(d / f'{i}.png')
  reader = folder.ImageFolderReader(str(d), intrinsics=[100.0, 90.0, 11.5, 7.5])
  with pytest.raises(ValueError, match="0.png: expected RGB image, got mode 'RGBA'"):
    reader.load(0)
  for i in range(3):
    Image.fromarray(_frame(i)).save(d / f'{i}.png')
  np.testing.assert_array_equal(reader.load(0)['intrinsics'], [[100, 0, 11.5], [0, 90, 7.5], [0, 0, 1]])


def test_video_context_neighbours(tmp_path):
  iio.imwrite(tmp_path / 'clip.mp4', np.stack([_frame(i, 32, 48) for i in range(6)]), fps=10)
  reader = folder.VideoReader(str(tmp_path), back_context=2, forward_context=1)
  assert len(reader) == 3
  for i in range(3):
    s = reader.load(i)
    t = _index(np.asarray(s['rgb']) / 255.0)
    assert t == i + 2
    assert [_index(np.asarray(c) / 255.0) for c in s['rgb_context']] == [t - 2, t - 1, t + 1]


def test_undecodable_video(tmp_path):
  (tmp_path / 'broken.mp4').write_bytes(b'not a video at all')
  with pytest.raises(ValueError, match='broken.mp4: cannot decode video'):
    folder.VideoReader(str(tmp_path))
