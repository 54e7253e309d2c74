"""Inference CLI on a folder of PNGs and a short video, with a recipe DepthResNet18 model."""
import os
import re

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from lib import torch_writer
from packnet_jax import infer
from packnet_jax.convert import converter
from packnet_jax.utils import colormap

H, W = 64, 96


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('infer_model')
  ckpt = torch_writer.recipe_checkpoint(tmp / 'depth.ckpt', pose=None, fmt='zip')
  return converter.save_converted(converter.convert_checkpoint(ckpt), tmp / 'model')


def _images(n, seed):
  return np.random.RandomState(seed).randint(0, 256, (n, H, W, 3)).astype(np.uint8)


def read_ply(path):
  """(points [N,3] float32, colors [N,3] uint8) of a binary little-endian PLY."""
  data = path.read_bytes()
  header, body = data.split(b'end_header\n', 1)
  lines = header.decode('ascii').splitlines()
  assert lines[:2] == ['ply', 'format binary_little_endian 1.0']
  count = int(next(line for line in lines if line.startswith('element vertex')).split()[-1])
  props = [line.split()[1:] for line in lines if line.startswith('property')]
  dtype = np.dtype([(name, {'float': '<f4', 'uchar': 'u1'}[kind]) for kind, name in props])
  vertices = np.frombuffer(body, dtype, count=count)
  assert len(body) == count * dtype.itemsize
  points = np.stack([vertices[c] for c in 'xyz'], -1)
  return points, np.stack([vertices[c] for c in ('red', 'green', 'blue')], -1)


def _check_npz(path):
  with np.load(path) as f:
    assert sorted(f.files) == ['depth', 'inv_depth']
    inv_depth, depth = f['inv_depth'], f['depth']
  assert inv_depth.shape == depth.shape == (H, W)
  assert inv_depth.dtype == depth.dtype == np.float32
  assert np.all(np.isfinite(inv_depth)) and np.all(np.isfinite(depth))
  assert inv_depth.min() > 0.01 and inv_depth.max() < 10.0  # DepthResNet head range
  np.testing.assert_allclose(depth * inv_depth, 1.0, rtol=1e-6)
  return inv_depth, depth


def test_folder_of_pngs(tmp_path, model_dir):
  images = _images(3, 0)
  folder = tmp_path / 'in'
  (folder / 'sub').mkdir(parents=True)
  for image, name in zip(images, ('b.png', 'a.png', 'sub/c.png')):
    Image.fromarray(image).save(folder / name)
  out = tmp_path / 'out'
  rc = infer.main(['infer', '--checkpoint', str(model_dir), '--input', str(folder), '--output', str(out),
                   '--save', 'png', '--save', 'ply', '--image_shape', f'{H},{W}', '--batch_size', '2',
                   '--quiet'])
  assert rc == 0
  files = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
  assert files == sorted(f'{stem}.{ext}' for stem in ('a', 'b', 'sub/c') for ext in ('npz', 'png', 'ply'))
  for image, stem in zip(images, ('b', 'a', 'sub/c')):
    inv_depth, depth = _check_npz(out / f'{stem}.npz')
    png = np.asarray(Image.open(out / f'{stem}.png'))
    assert png.shape == (2 * H, W, 3)
    np.testing.assert_array_equal(png[:H], image)  # The input, then its colour-mapped inverse depth.
    np.testing.assert_array_equal(png[H:], colormap.colorize_inv_depth(inv_depth))
    points, colors = read_ply(out / f'{stem}.ply')
    assert points.shape == (H * W, 3) and colors.shape == (H * W, 3)
    assert np.all(np.isfinite(points))
    np.testing.assert_array_equal(colors, image.reshape(-1, 3))
    np.testing.assert_allclose(points[:, 2], depth.reshape(-1), rtol=1e-6)  # z = depth


def test_video(tmp_path, model_dir):
  frames = _images(10, 1)
  video = tmp_path / 'clip.mp4'
  writer = imageio.get_writer(video, fps=5, macro_block_size=16)
  for frame in frames:
    writer.append_data(frame)
  writer.close()
  out = tmp_path / 'out'
  rc = infer.main(['infer', '--checkpoint', str(model_dir), '--input', str(video), '--output', str(out), '--save', 'mp4',
                   '--image_shape', f'{H},{W}', '--flip_pp', '--quiet'])
  assert rc == 0
  assert sorted(os.listdir(out)) == sorted([f'clip_{i:06d}.npz' for i in range(10)] + ['clip_depth.mp4'])
  for i in range(10):
    _check_npz(out / f'clip_{i:06d}.npz')
  reader = imageio.get_reader(out / 'clip_depth.mp4', 'ffmpeg')
  shapes = [frame.shape for frame in reader]  # (list(reader) trips on its infinite len())
  reader.close()
  assert shapes == [(H, 2 * W, 3)] * 10


def _gray_folder(tmp_path, mode):
  folder = tmp_path / f'{mode}_in'
  folder.mkdir()
  Image.fromarray(np.zeros((H, W, 4), np.uint8)).convert(mode).save(folder / 'x.png')
  return folder


@pytest.mark.parametrize('case, pattern', [
    ('gray', r"x\.png: expected RGB image, got mode 'L'"),
    ('rgba', r"x\.png: expected RGB image, got mode 'RGBA'"),
    ('empty_folder', 'no images'),
    ('bad_video', 'cannot decode video'),
    ('unwritable_output', '--output: cannot create folder'),
    ('mp4_needs_video', '--save mp4: needs a video input'),
    ('bad_shape', 'H and W must be positive multiples of 32'),
])
def test_bad_input_gives_one_line_error(tmp_path, model_dir, capsys, case, pattern):
  inputs, out, extra = tmp_path / 'in', tmp_path / 'out', []
  inputs.mkdir()
  if case in ('gray', 'rgba'):
    inputs = _gray_folder(tmp_path, 'L' if case == 'gray' else 'RGBA')
  elif case == 'bad_video':
    inputs = tmp_path / 'broken.mp4'
    inputs.write_bytes(np.random.RandomState(2).bytes(2000))
  elif case in ('unwritable_output', 'mp4_needs_video', 'bad_shape'):
    Image.fromarray(_images(1, 3)[0]).save(inputs / 'ok.png')
    if case == 'unwritable_output':
      (tmp_path / 'file.txt').write_text('x')
      out = tmp_path / 'file.txt' / 'out'
    extra = {'mp4_needs_video': ['--save', 'mp4'], 'bad_shape': ['--image_shape', '60,96']}.get(case, [])
  rc = infer.main(['infer', '--checkpoint', str(model_dir), '--input', str(inputs), '--output', str(out), '--quiet',
                   *(extra or ['--image_shape', f'{H},{W}'])])
  err = capsys.readouterr().err
  assert rc == 1
  assert err.startswith('error: ') and err.count('\n') == 1, err
  assert re.search(pattern, err), err
