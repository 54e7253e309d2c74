r"""Depth inference on an image, a folder of images or a video.

  python -m packnet_jax.infer --checkpoint MODEL --input PATH --output DIR \
      [--image_shape H,W] [--save png,ply,mp4] [--flip_pp] [--batch_size N] \
      [--dtype float32|bfloat16] [--intrinsics fx,fy,cx,cy] [--step N|best]

MODEL is a released `.ckpt`, a converted directory or a training workdir (its
newest complete checkpoint, or --step).

Images are read as the reference's scripts/infer.py does: RGB, PIL LANCZOS
resize to `image_shape` (default: the checkpoint's training shape), /255. For
every frame `<stem>.npz` holds `inv_depth` and `depth` (float32 [H,W] at the
network resolution). Optional outputs:
  png  the input stacked above its colour-mapped inverse depth (as the reference);
  ply  a coloured point cloud (binary PLY) from depth and intrinsics: `--intrinsics`
       are those of the input image (scaled to the network resolution); the
       default is KITTI's camera (1242×375) scaled to the network resolution;
  mp4  (video input) side-by-side input | inverse depth video.
A folder is searched recursively (sorted), outputs mirror its subfolders; video
frames are named `<video stem>_<frame:06d>`. Every file is written atomically.
"""
import dataclasses
import itertools
import os
import sys
import types

import numpy as np
from absl import flags

from packnet_jax import cli

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')
SAVE_CHOICES = ('png', 'ply', 'mp4')
# KITTI raw P_rect_02 (2011_09_26), for images of 375×1242.
KITTI_INTRINSICS = (721.5377, 721.5377, 609.5593, 172.854)
KITTI_SHAPE = (375, 1242)


@dataclasses.dataclass
class Frame:
  name: str  # output stem relative to the output folder
  image: object  # PIL RGB image at its original size


def _numbers(text, cast, count, flag):
  try:
    values = tuple(cast(v) for v in text.replace(' ', ',').split(',') if v)
  except ValueError:
    values = ()
  if len(values) != count:
    raise ValueError(f'{flag}: expected {count} comma-separated numbers, got {text!r}')
  return values


def parse_args(argv):
  """argv (program name first) → a namespace of checked arguments."""
  fv = flags.FlagValues()
  cli.define_checkpoint(fv)
  cli.define_dtype(fv)
  cli.define_image_shape(fv)
  flags.DEFINE_string('input', None, 'image, folder of images, or video (mp4/avi/...)', flag_values=fv,
                      required=True)
  flags.DEFINE_string('output', None, 'output folder', flag_values=fv, required=True)
  flags.DEFINE_multi_string('save', [], f'extra outputs, comma-separated or repeated: {",".join(SAVE_CHOICES)}',
                            flag_values=fv)
  flags.DEFINE_bool('flip_pp', False, 'flip post-processing', flag_values=fv)
  flags.DEFINE_integer('batch_size', 1, 'frames per forward pass', lower_bound=1, flag_values=fv)
  flags.DEFINE_string('intrinsics', None, 'fx,fy,cx,cy of the input images (for --save ply)', flag_values=fv)
  flags.DEFINE_bool('quiet', False, 'no progress bar', flag_values=fv)
  fv(argv)
  save = sorted({s.strip() for item in fv.save for s in item.split(',') if s.strip()})
  for s in save:
    if s not in SAVE_CHOICES:
      raise ValueError(f'--save: expected some of {SAVE_CHOICES}, got {s!r}')
  return types.SimpleNamespace(
      checkpoint=fv.checkpoint, step=fv.step, dtype=fv.dtype, input=fv.input, output=fv.output, save=save,
      image_shape=cli.parse_image_shape(fv.image_shape), flip_pp=fv.flip_pp, batch_size=fv.batch_size,
      intrinsics=_numbers(fv.intrinsics, float, 4, '--intrinsics') if fv.intrinsics else None, quiet=fv.quiet)


def list_inputs(path):
  """('images', [(path, stem)]) for an image or folder, ('video', path) for a video."""
  path = os.fspath(path)
  if os.path.isdir(path):
    found = []
    for folder, dirs, files in os.walk(path):
      dirs.sort()
      for name in files:
        if name.lower().endswith(IMAGE_EXTS):
          full = os.path.join(folder, name)
          found.append((full, os.path.splitext(os.path.relpath(full, path))[0]))
    if not found:
      raise ValueError(f'{path}: no images ({", ".join(IMAGE_EXTS)}) found in folder')
    return 'images', sorted(found, key=lambda item: item[1])
  if not os.path.isfile(path):
    raise ValueError(f'{path}: input not found (expected an image, a folder or a video)')
  ext = os.path.splitext(path)[1].lower()
  if ext in VIDEO_EXTS:
    return 'video', path
  if ext in IMAGE_EXTS:
    return 'images', [(path, os.path.splitext(os.path.basename(path))[0])]
  raise ValueError(f'{path}: unsupported input type {ext!r} (images: {IMAGE_EXTS}, videos: {VIDEO_EXTS})')


def open_video(path):
  """(imageio reader, fps) or a one-line ValueError for an undecodable file."""
  import imageio.v2 as imageio  # pylint: disable=import-outside-toplevel
  try:
    reader = imageio.get_reader(path, 'ffmpeg')
    fps = float(reader.get_meta_data().get('fps') or 10.0)
  except Exception as e:  # imageio/ffmpeg raise OSError, RuntimeError, ... for bad files.
    first_line = (str(e).splitlines() or [''])[0]
    raise ValueError(f'{path}: cannot decode video ({type(e).__name__}: {first_line})') from None
  return reader, fps


def iter_frames(kind, items, reader=None):
  """Yields Frame objects (decoding lazily, one at a time)."""
  from packnet_jax.data import image_io  # pylint: disable=import-outside-toplevel
  if kind == 'images':
    for path, stem in items:
      yield Frame(stem, image_io.load_rgb(path))
    return
  stem = os.path.splitext(os.path.basename(items))[0]
  count = 0
  try:
    for i, frame in enumerate(reader):
      yield Frame(f'{stem}_{i:06d}', image_io.check_rgb_array(frame, f'{items} frame {i}'))
      count += 1
  except ValueError:
    raise
  except Exception as e:  # A decode error mid-stream.
    raise ValueError(f'{items}: cannot decode video frame {count} ({type(e).__name__})') from None
  if count == 0:
    raise ValueError(f'{items}: video has no decodable frames')


def _batches(frames, size):
  batch = []
  for frame in frames:
    batch.append(frame)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def intrinsics_for(frame_hw, net_hw, intrinsics=None):
  """[3,3] K at the network resolution (half-pixel scaling of geometry.camera)."""
  from packnet_jax.geometry.camera import scale_intrinsics  # pylint: disable=import-outside-toplevel
  fx, fy, cx, cy = intrinsics or KITTI_INTRINSICS
  src_h, src_w = frame_hw if intrinsics else KITTI_SHAPE
  K = np.array([[[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]], np.float32)
  return np.asarray(scale_intrinsics(K, net_hw[1] / src_w, net_hw[0] / src_h))[0]


class _Outputs:
  """Writes the per-frame files (and the video) for one run."""

  def __init__(self, args, out_dir, net_hw):
    self.args, self.out_dir, self.net_hw = args, out_dir, net_hw
    self.video_writer = None
    self.count = 0

  def _path(self, stem, ext):
    path = os.path.join(self.out_dir, stem + ext)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path

  def write(self, frame, rgb, inv_depth, depth):
    """rgb [H,W,3] uint8 (resized input); inv_depth, depth [H,W] float32."""
    from packnet_jax.utils import colormap  # pylint: disable=import-outside-toplevel
    from packnet_jax.utils import io as io_utils  # pylint: disable=import-outside-toplevel
    io_utils.atomic_save_npz(self._path(frame.name, '.npz'), inv_depth=inv_depth, depth=depth)
    save = self.args.save
    viz = colormap.colorize_inv_depth(inv_depth) if ('png' in save or 'mp4' in save) else None
    if 'png' in save:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with io_utils.atomic_path(self._path(frame.name, '.png')) as tmp:
        Image.fromarray(np.concatenate([rgb, viz], axis=0)).save(tmp, format='PNG')
    if 'ply' in save:
      self._write_ply(frame, rgb, depth)
    if self.video_writer is not None:
      self.video_writer.append_data(np.concatenate([rgb, viz], axis=1))
    self.count += 1

  def _write_ply(self, frame, rgb, depth):
    from packnet_jax.geometry.camera import reconstruct  # pylint: disable=import-outside-toplevel
    from packnet_jax.utils import ply  # pylint: disable=import-outside-toplevel
    K = intrinsics_for((frame.image.size[1], frame.image.size[0]), self.net_hw, self.args.intrinsics)
    points = np.asarray(reconstruct(depth[None, ..., None], K[None]))[0]
    ply.write_ply(self._path(frame.name, '.ply'), points.reshape(-1, 3), rgb.reshape(-1, 3))


def _load_depth_model(args):
  """(model, (H, W)) after checking the model has a depth net and the shape is usable."""
  from packnet_jax import api  # pylint: disable=import-outside-toplevel
  model = api.load_model(args.checkpoint, dtype=args.dtype, step=args.step)
  if model.depth_net is None:
    raise ValueError(f'{args.checkpoint}: checkpoint has no depth_net weights (depth_net: no weights in checkpoint)')
  net_hw = tuple(args.image_shape or model.image_shape or ())
  if len(net_hw) != 2:
    raise ValueError('--image_shape: the checkpoint stores no training image shape; pass --image_shape H,W')
  if net_hw[0] % 32 or net_hw[1] % 32 or min(net_hw) <= 0:
    raise ValueError(f'--image_shape: H and W must be positive multiples of 32, got {net_hw} '
                     '(from the checkpoint)')
  return model, net_hw


def run_inference(args):
  """Runs inference; returns the number of frames written. Raises ValueError for bad input."""
  import contextlib  # pylint: disable=import-outside-toplevel
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  from packnet_jax.data import image_io  # pylint: disable=import-outside-toplevel
  from packnet_jax.geometry.depth import inv2depth  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import io as io_utils  # pylint: disable=import-outside-toplevel

  # Cheap input checks first, before the model is loaded.
  kind, items = list_inputs(args.input)
  if 'mp4' in args.save and kind != 'video':
    raise ValueError(f'--save mp4: needs a video input, got {kind} {args.input}')
  out_dir = io_utils.ensure_writable_dir(args.output, '--output')
  with contextlib.ExitStack() as stack:
    reader, fps = open_video(items) if kind == 'video' else (None, None)
    if reader is not None:
      stack.callback(reader.close)
    # The first frame is decoded before the model is loaded and compiled: a bad first input fails at once.
    frames = iter_frames(kind, items, reader)
    first = next(frames, None)
    frames = itertools.chain([first] if first is not None else [], frames)
    model, net_hw = _load_depth_model(args)
    outputs = _Outputs(args, out_dir, net_hw)
    if 'mp4' in args.save:
      import imageio.v2 as imageio  # pylint: disable=import-outside-toplevel
      stem = os.path.splitext(os.path.basename(items))[0]
      tmp = stack.enter_context(io_utils.atomic_path(os.path.join(out_dir, f'{stem}_depth.mp4')))
      outputs.video_writer = imageio.get_writer(tmp, format='FFMPEG', fps=fps, macro_block_size=16)
      stack.callback(outputs.video_writer.close)  # Runs before the atomic rename.
    total = len(items) if kind == 'images' else None
    progress = stack.enter_context(tqdm(total=total, unit='frame', disable=args.quiet, file=sys.stderr))
    for batch in _batches(frames, args.batch_size):
      rgb = np.stack([np.asarray(image_io.resize_image(f.image, net_hw), np.uint8) for f in batch])
      images = rgb.astype(np.float32) / np.float32(255.0)  # torchvision ToTensor
      if len(batch) < args.batch_size:  # Pad to the one compiled batch shape.
        images = np.concatenate([images, np.repeat(images[-1:], args.batch_size - len(batch), 0)])
      inv_depth = model.predict_inv_depth(images, flip_pp=args.flip_pp)[:len(batch)]
      depth = np.asarray(inv2depth(inv_depth))[..., 0]
      inv_depth = np.asarray(inv_depth)[..., 0]
      for i, frame in enumerate(batch):
        outputs.write(frame, rgb[i], inv_depth[i], depth[i])
      progress.update(len(batch))
  return outputs.count


def _run(args):
  count = run_inference(args)
  print(f'wrote {count} frame(s) to {os.path.abspath(args.output)}')
  return 0


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_args, _run, argv)


def run():
  """Console script `packnet-infer` (setup.cfg)."""
  sys.exit(main())


if __name__ == '__main__':
  sys.exit(main())
