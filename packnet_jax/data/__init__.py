"""packnet_jax.data: input pipelines (the only package that imports TensorFlow).

TensorFlow is imported (pinned to the CPU, by `_tf`) only with the tf.data
pipeline, i.e. when one of the entry points below is first used: `infer` and
`packnet_jax.load_model` read images through `image_io` without it (3 s less
start-up). Entry points:
  build_dataset(dataset_config, split, ...)       → tf.data.Dataset
  make_train_iterator(dataset_config, ...)        → resumable numpy iterator
                                                    (pass source= to scan the split once)
  make_eval_iterator(dataset_config, split, ...)  → one exact pass with `mask`
  benchmark_pipeline(dataset_config, ...)         → samples/s and per CPU core
Readers: kitti.KITTIReader, ddad.DDADReader, folder.ImageFolderReader,
folder.VideoReader; TFDS builders in tfds_builders (imported lazily).
Sample dict: rgb [H,W,3] f32 [0,1], rgb_original, rgb_context [N,H,W,3],
rgb_context_original, intrinsics [3,3] f32, depth [H,W,1] (0 invalid), pose,
pose_context [N,4,4], idx, filename. A colour-jittered training sample has no
rgb / rgb_context: it carries the originals and the jitter parameters
(`jitter.PARAM_KEYS`), and the train step jitters them on the device.
"""
import importlib

_ENTRY_POINTS = {'build_dataset': 'config', 'build_reader': 'config', 'build_source': 'config',
                 'make_eval_iterator': 'config', 'make_train_iterator': 'config', 'TrainIterator': 'config',
                 'benchmark_pipeline': 'throughput'}
__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name):
  """The entry points, imported on first use (PEP 562)."""
  if name not in _ENTRY_POINTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  return getattr(importlib.import_module(f'{__name__}.{_ENTRY_POINTS[name]}'), name)
