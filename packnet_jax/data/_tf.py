"""The one place where TensorFlow is imported.

TensorFlow only feeds the input pipeline, so it is pinned to the CPU before
anything else touches it: it must never reserve accelerator memory that JAX
needs. oneDNN is disabled because its reordered float ops make CPU results
differ run to run in the last bit.
"""
import os

os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # Already initialised by someone else; keep going.
  pass

__all__ = ['tf']
