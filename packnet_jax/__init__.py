"""packnet-jax: PackNet-SfM (self-supervised monocular depth) in JAX/Flax."""

__version__ = "0.1.0"


def load_model(path, **kwargs):
  """Loads a released `.ckpt` file or a converted directory (see `packnet_jax.api`)."""
  from packnet_jax.api import load_model as _load_model  # Lazy: keeps `import packnet_jax` light.
  return _load_model(path, **kwargs)
