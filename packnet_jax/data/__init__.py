"""packnet_jax.data: input pipelines (the only package that imports TensorFlow).

Importing it pins TensorFlow to the CPU. Entry points:
  build_dataset(dataset_config, split, ...)       → tf.data.Dataset
  make_train_iterator(dataset_config, ...)        → resumable numpy iterator
                                                    (pass source= to scan the split once)
  make_eval_iterator(dataset_config, split, ...)  → one exact pass with `mask`
  benchmark_pipeline(dataset_config, ...)         → samples/s and per CPU core
Readers: kitti.KITTIReader, ddad.DDADReader, folder.ImageFolderReader,
folder.VideoReader; TFDS builders in tfds_builders (imported lazily).
Sample dict: rgb [H,W,3] f32 [0,1], rgb_original, rgb_context [N,H,W,3],
rgb_context_original, intrinsics [3,3] f32, depth [H,W,1] (0 invalid), pose,
pose_context [N,4,4], idx, filename.
"""
from packnet_jax.data import _tf  # noqa: F401  (CPU-only TensorFlow first)
from packnet_jax.data.config import build_dataset
from packnet_jax.data.config import build_reader
from packnet_jax.data.config import build_source
from packnet_jax.data.config import make_eval_iterator
from packnet_jax.data.config import make_train_iterator
from packnet_jax.data.config import TrainIterator
from packnet_jax.data.throughput import benchmark_pipeline

__all__ = ['benchmark_pipeline', 'build_dataset', 'build_reader', 'build_source', 'make_eval_iterator',
           'make_train_iterator', 'TrainIterator']
