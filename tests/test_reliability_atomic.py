"""Atomic outputs: an interrupted write never leaves a half-written file.

infer / eval / export write every output to a temporary file in the same
folder and `os.replace` it onto the final name. These tests break writes at
the two places a crash can hit — inside the serializer (half the bytes are
written) and just before the rename — and check that the final name then
holds either nothing or the previous complete file, and that no temporary
file is left behind. One test SIGKILLs a real inference run mid-way and
checks that every file it left under its final name is complete.
"""
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from lib import torch_writer
from packnet_jax import infer
from packnet_jax.utils import io as io_utils

REPO = pathlib.Path(__file__).resolve().parents[1]
H, W = 64, 96


class Crash(Exception):
  """Stands in for a crash (disk full, kill) in the middle of a write."""


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
  return torch_writer.recipe_checkpoint(tmp_path_factory.mktemp('atomic') / 'depth.ckpt', pose=None, fmt='zip')


def _images(folder, n, seed=0):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.RandomState(seed)
  for i in range(n):
    Image.fromarray(rng.randint(0, 256, (H, W, 3)).astype(np.uint8)).save(folder / f'f{i:03d}.png')
  return folder


def _listing(folder):
  return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def _infer(ckpt, inputs, out, *extra):
  return infer.main(['infer', '--checkpoint', str(ckpt), '--input', str(inputs), '--output', str(out), '--quiet',
                     '--image_shape', f'{H},{W}', *extra])


def _half_then_crash(write_full):
  """A serializer that writes the first half of its real output, then crashes."""
  def broken(target, *args, **kwargs):
    import io  # pylint: disable=import-outside-toplevel
    buf = io.BytesIO()
    write_full(buf, *args, **kwargs)
    data = buf.getvalue()
    if isinstance(target, (str, os.PathLike)):
      with open(target, 'wb') as f:
        f.write(data[:len(data) // 2])
    else:
      target.write(data[:len(data) // 2])
    raise Crash('simulated crash mid-write')
  return broken


# --------------------------------------------------------------------------- utils/io
@pytest.mark.parametrize('where', ['serializer', 'rename'])
def test_atomic_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch, where):
  path = tmp_path / 'x.npz'
  io_utils.atomic_save_npz(path, a=np.arange(1000.0))
  before = path.read_bytes()
  if where == 'serializer':
    monkeypatch.setattr(np, 'savez_compressed', _half_then_crash(np.savez_compressed))
  else:
    monkeypatch.setattr(os, 'replace', lambda *a: (_ for _ in ()).throw(Crash('before rename')))
  with pytest.raises(Crash):
    io_utils.atomic_save_npz(path, a=np.zeros(5000))
  assert path.read_bytes() == before  # The previous complete file, untouched.
  assert _listing(tmp_path) == ['x.npz']  # No temporary left.


def test_atomic_write_text_and_bytes(tmp_path):
  io_utils.atomic_write_text(tmp_path / 'm.json', '{"a": 1}')
  io_utils.atomic_write_bytes(tmp_path / 'b.bin', b'\x00\x01')
  assert (tmp_path / 'm.json').read_text() == '{"a": 1}'
  assert (tmp_path / 'b.bin').read_bytes() == b'\x00\x01'
  assert _listing(tmp_path) == ['b.bin', 'm.json']


# --------------------------------------------------------------------------- infer
def test_infer_crash_mid_npz_leaves_no_partial_file(tmp_path, ckpt, monkeypatch):
  inputs = _images(tmp_path / 'in', 2)
  out = tmp_path / 'out'
  assert _infer(ckpt, inputs, out) == 0
  good = {name: (out / name).read_bytes() for name in _listing(out)}
  assert sorted(good) == ['f000.npz', 'f001.npz']
  # Second run over new images: the first npz write dies half-way.
  _images(tmp_path / 'in', 2, seed=1)
  monkeypatch.setattr(np, 'savez_compressed', _half_then_crash(np.savez_compressed))
  with pytest.raises(Crash):
    _infer(ckpt, inputs, out)
  assert {name: (out / name).read_bytes() for name in _listing(out)} == good


@pytest.mark.parametrize('save, ext', [('png', '.png'), ('ply', '.ply')])
def test_infer_crash_before_rename_leaves_no_file(tmp_path, ckpt, monkeypatch, save, ext):
  inputs = _images(tmp_path / 'in', 1)
  out = tmp_path / 'out'
  _crash_on_replace(monkeypatch, ext)
  with pytest.raises(Crash):
    _infer(ckpt, inputs, out, '--save', save)
  # The npz (written first) is complete; the crashed output is absent, not partial, with no temp.
  assert _listing(out) == ['f000.npz']
  with np.load(out / 'f000.npz') as f:
    assert f['depth'].shape == (H, W)


def test_infer_sigkill_leaves_only_complete_files(tmp_path, ckpt):
  inputs = _images(tmp_path / 'in', 40)
  out = tmp_path / 'out'
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'packnet_jax.infer', '--checkpoint', str(ckpt), '--input', str(inputs),
       '--output', str(out), '--quiet', '--image_shape', f'{H},{W}', '--save', 'png,ply'],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.monotonic() + 300
  try:
    while time.monotonic() < deadline and proc.poll() is None:
      if out.is_dir() and len(os.listdir(out)) >= 10:
        break
      time.sleep(0.005)
    assert proc.poll() is None, f'inference ended before it could be killed: {proc.stderr.read()}'
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    proc.wait()
  names = [n for n in _listing(out) if not n.startswith('.')]  # Hidden names are temporaries.
  assert 3 <= len(names) < 120, names
  for name in names:
    path = out / name
    if name.endswith('.npz'):
      with np.load(path) as f:
        assert f['depth'].shape == (H, W) and f['inv_depth'].shape == (H, W)
    elif name.endswith('.png'):
      with Image.open(path) as im:
        im.load()
        assert im.size == (W, 2 * H)
    else:
      data = path.read_bytes()
      assert name.endswith('.ply') and data.startswith(b'ply\n')
      header = data.split(b'end_header\n', 1)[0] + b'end_header\n'
      assert len(data) == len(header) + H * W * (3 * 4 + 3), name


def _crash_on_replace(monkeypatch, suffix):
  real_replace = os.replace

  def replace(src, dst):
    if str(dst).endswith(suffix):
      raise Crash(f'crash before renaming {dst}')
    return real_replace(src, dst)

  monkeypatch.setattr(os, 'replace', replace)


# --------------------------------------------------------------------------- eval
def test_eval_json_crash_keeps_previous_results(tmp_path, monkeypatch):
  from packnet_jax.eval import report  # pylint: disable=import-outside-toplevel
  path = tmp_path / 'metrics.json'
  report.write_json(path, {'abs_rel': 0.1})
  before = path.read_bytes()
  _crash_on_replace(monkeypatch, 'metrics.json')
  with pytest.raises(Crash):
    report.write_json(path, {'abs_rel': 0.2, 'rows': list(range(10000))})
  assert path.read_bytes() == before
  assert _listing(tmp_path) == ['metrics.json']


# --------------------------------------------------------------------------- export
def test_export_crash_leaves_no_partial_artifact(tmp_path, ckpt, monkeypatch):
  from packnet_jax import export  # pylint: disable=import-outside-toplevel
  out = tmp_path / 'out'
  out.mkdir()
  target = out / 'model.stablehlo'
  args = ['export', '--checkpoint', str(ckpt), '--format', 'stablehlo', '--image_shape', f'{H},{W}',
          '--output', str(target)]
  real_write = io_utils.atomic_write_bytes
  written = {}

  def half_then_crash(path, data):
    written['size'] = len(data)
    with io_utils.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        f.write(data[:len(data) // 2])
      raise Crash('simulated crash mid-write')

  monkeypatch.setattr(io_utils, 'atomic_write_bytes', half_then_crash)
  with pytest.raises(Crash):
    export.main(args)
  assert written['size'] > 1000 and _listing(out) == []
  monkeypatch.setattr(io_utils, 'atomic_write_bytes', real_write)
  _crash_on_replace(monkeypatch, '.stablehlo')
  with pytest.raises(Crash):
    export.main(args)
  assert _listing(out) == []
