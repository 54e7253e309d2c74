"""Ordered frames without ground truth: image folders and video files.

* `ImageFolderReader(root)`: every folder under `root` that directly holds
  images (.png/.jpg/.jpeg) is one sequence; frames are ordered by the numbers
  in their names (then by name).
* `VideoReader(root)`: every video file under `root` (or `root` itself if it
  is a file) is one sequence, decoded with imageio (ffmpeg). A decoded video
  is cached in memory (the last `cache_videos` files) because ffmpeg cannot
  seek cheaply; extract frames to a folder for large videos.

Context = neighbouring frames by position: `back_context` before (oldest
first) then `forward_context` after; frames without a full context are not
samples. Intrinsics: `intrinsics` argument ([3,3], or (fx, fy, cx, cy) in
pixels) or, by default, KITTI-like *normalised* intrinsics scaled to the
frame: fx = 0.58·W, fy = 1.92·H, cx = 0.5·W, cy = 0.5·H (the normalised KITTI
camera used by monodepth2; the reference's ImageDataset instead uses a dummy
f = 1000 px, which is far from any real camera at training resolutions).
"""
import collections
import os
import re
import threading

import numpy as np

from packnet_jax.data import image_io

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.gif')


def default_intrinsics(height, width):
  """KITTI-like intrinsics for a frame of (height, width) pixels."""
  return np.array([[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1]],
                  dtype=np.float64)


def make_intrinsics(value, height, width):
  if value is None or len(value) == 0:
    return default_intrinsics(height, width)
  value = np.asarray(value, dtype=np.float64)
  if value.shape == (3, 3):
    return value.copy()
  if value.shape == (4,):
    fx, fy, cx, cy = value
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
  raise ValueError(f'intrinsics: expected [3,3] or (fx, fy, cx, cy), got shape {value.shape}')


def _frame_key(name):
  return [int(n) for n in re.findall(r'\d+', name)], name


class _SequenceReader:
  """Common indexing: sequences of frames → samples with neighbour context."""

  def __init__(self, sequences, back_context, forward_context, intrinsics, split):
    if back_context < 0 or forward_context < 0:
      raise ValueError(f'context: expected >= 0, got back={back_context} forward={forward_context}')
    self.sequences = sequences  # [(name, num_frames)]
    self.back, self.forward = back_context, forward_context
    self.intrinsics_value = intrinsics
    self.split = split
    self.items = [(s, f) for s, (_, n) in enumerate(sequences)
                  for f in range(back_context, n - forward_context)]

  def __len__(self):
    return len(self.items)

  def context_frames(self, frame):
    return list(range(frame - self.back, frame)) + list(range(frame + 1, frame + 1 + self.forward))

  def load(self, idx):
    seq, frame = self.items[idx]
    rgb = self.frame(seq, frame)
    h, w = image_io.dims(rgb)
    sample = {
        'idx': idx,
        'filename': f'{self.sequences[seq][0]}_{frame:010d}'.replace(os.sep, '_'),
        'rgb': rgb,
        'intrinsics': make_intrinsics(self.intrinsics_value, h, w),
    }
    if self.back or self.forward:
      sample['rgb_context'] = [self.frame(seq, f) for f in self.context_frames(frame)]
    return sample


class ImageFolderReader(_SequenceReader):
  """One sequence per folder of images (see module docstring)."""

  def __init__(self, root, back_context=0, forward_context=0, intrinsics=None, split='images'):
    if not os.path.isdir(root):
      raise ValueError(f'path: dataset root not found: {root}')
    self.files = []
    sequences = []
    for folder, _, names in sorted(os.walk(root)):
      images = sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)), key=_frame_key)
      if images:
        self.files.append([os.path.join(folder, n) for n in images])
        sequences.append((os.path.relpath(folder, root), len(images)))
    if not sequences:
      raise ValueError(f'{root}: no images ({", ".join(IMAGE_EXTENSIONS)}) found in the image folder')
    super().__init__(sequences, back_context, forward_context, intrinsics, split)

  def frame(self, seq, frame):
    return image_io.load_rgb(self.files[seq][frame])


def read_video(path):
  """All frames of a video as uint8 [T,H,W,3]; one-line error if undecodable."""
  import imageio.v3 as iio
  try:
    frames = np.asarray(iio.imread(path))
  except Exception as e:  # imageio/ffmpeg raise OSError, RuntimeError, ...
    raise ValueError(f'{path}: cannot decode video ({type(e).__name__})') from None
  if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
    raise ValueError(f'{path}: expected RGB video frames [T,H,W,3], got shape {frames.shape}')
  return frames


class VideoReader(_SequenceReader):
  """One sequence per video file (see module docstring)."""

  def __init__(self, root, back_context=0, forward_context=0, intrinsics=None, split='videos',
               cache_videos=2):
    if os.path.isfile(root):
      self.paths = [root]
    elif os.path.isdir(root):
      self.paths = sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names
                          if n.lower().endswith(VIDEO_EXTENSIONS))
      if not self.paths:
        raise ValueError(f'{root}: no video files ({", ".join(VIDEO_EXTENSIONS)}) found')
    else:
      raise ValueError(f'path: dataset root not found: {root}')
    self._cache = collections.OrderedDict()
    self._lock = threading.Lock()  # tf.data calls load() from several threads.
    self._cache_size = cache_videos
    base = root if os.path.isdir(root) else os.path.dirname(root)
    sequences = [(os.path.splitext(os.path.relpath(p, base))[0], len(self._frames(i)))
                 for i, p in enumerate(self.paths)]
    super().__init__(sequences, back_context, forward_context, intrinsics, split)

  def _frames(self, seq):
    with self._lock:
      if seq not in self._cache:
        self._cache[seq] = read_video(self.paths[seq])
        while len(self._cache) > self._cache_size:
          self._cache.popitem(last=False)
      self._cache.move_to_end(seq)
      return self._cache[seq]

  def frame(self, seq, frame):
    return image_io.check_rgb_array(self._frames(seq)[frame], f'{self.paths[seq]}[{frame}]')
