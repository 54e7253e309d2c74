"""packnet-jax: PackNet-SfM (self-supervised monocular depth) in JAX/Flax."""

import os as _os

# TensorFlow (tf.data, and clu's summary writers) may be imported by any entry point; these
# must be set before its first import: oneDNN's reordered float ops make CPU results
# differ in the last bit between runs, and TF's C++ info logs drown the training output.
_os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

__version__ = "0.1.0"


def load_model(path, **kwargs):
  """Loads a released `.ckpt` file or a converted directory (see `packnet_jax.api`)."""
  from packnet_jax.api import load_model as _load_model  # Lazy: keeps `import packnet_jax` light.
  return _load_model(path, **kwargs)
