"""The synthetic KITTI tree of tools/make_synthetic_kitti.py, written as a user writes it."""
import pathlib
import subprocess
import sys

TOOL = pathlib.Path(__file__).resolve().parents[2] / 'tools' / 'make_synthetic_kitti.py'


def make_synthetic_kitti(output, frames, height, width):
  """Writes the tree into `output` (a subprocess running the tool's command line); returns `output`."""
  subprocess.run([sys.executable, str(TOOL), '--output', str(output), '--frames', str(frames),
                  '--height', str(height), '--width', str(width)], check=True, capture_output=True)
  return output
