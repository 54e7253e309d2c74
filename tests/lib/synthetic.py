"""The synthetic KITTI tree of tools/make_synthetic_kitti.py, written as a user writes it."""
import pathlib
import subprocess
import sys

TOOL = pathlib.Path(__file__).resolve().parents[2] / 'tools' / 'make_synthetic_kitti.py'
# The one-device CLI tests (test_cli_one_device_end_to_end.py, test_bucket_workdir.py) train the demo
# config at 32x96, batch 2, on a tree of this many frames: 10 training samples, 5 steps per epoch, as
# test_multi_dataset.py's KITTI + image-folder concatenation. The epoch length is a constant of the
# compiled train step (the learning-rate schedule), so with equal epochs the session's compilation
# cache (conftest.py) compiles that step once for all three files.
ONE_DEVICE_DEMO_FRAMES = 18


def make_synthetic_kitti(output, frames, height, width):
  """Writes the tree into `output` (a subprocess running the tool's command line); returns `output`."""
  subprocess.run([sys.executable, str(TOOL), '--output', str(output), '--frames', str(frames),
                  '--height', str(height), '--width', str(width)], check=True, capture_output=True)
  return output
