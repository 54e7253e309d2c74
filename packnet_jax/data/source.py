"""Reader + transform → final numpy samples, seeded per example.

`SampleSource(reader, mode, ...)` is what the tf.data pipeline calls: given
(index, epoch) it loads the raw sample, applies the reference transforms and
returns a flat dict of numpy arrays with fixed keys. The colour-jitter RNG is
`numpy.random.default_rng([seed, epoch, index])`, so a sample's augmentation
does not depend on worker order, sharding or resume position. A jittered
train sample holds the un-jittered originals and the jitter parameters; the
train step applies them (`packnet_jax.data.jitter`).
"""
import numpy as np

from packnet_jax.data import transforms

MODES = ('train', 'validation', 'test')


class SampleSource:
  """Callable (index, epoch) → final sample dict for one reader and mode."""

  def __init__(self, reader, mode='train', image_shape=(), jittering=(), crop_train_borders=(),
               crop_eval_borders=(), seed=0, index_offset=0):
    if mode not in MODES:
      raise ValueError(f'mode: expected one of {MODES}, got {mode!r}')
    self.reader = reader
    self.mode = mode
    self.image_shape = tuple(image_shape or ())
    self.jittering = tuple(jittering or ())
    self.crop_train_borders = tuple(crop_train_borders or ())
    self.crop_eval_borders = tuple(crop_eval_borders or ())
    self.seed = int(seed)
    # Position of this dataset in a concatenation (`concat.ConcatSource`): the jitter RNG
    # is keyed by the concatenated index, so two datasets' k-th samples draw differently.
    self.index_offset = int(index_offset)

  def __len__(self):
    return len(self.reader)

  def __call__(self, index, epoch=0, uint8_images=False):
    """Final sample; `uint8_images` leaves the images uint8 (see transforms)."""
    index = int(index)
    raw = self.reader.load(index)
    if self.mode == 'train':
      rng = np.random.default_rng([self.seed, int(epoch), index + self.index_offset])
      sample = transforms.train_transform(raw, self.image_shape, self.jittering, self.crop_train_borders, rng,
                                          uint8_images=uint8_images)
    else:
      sample = transforms.eval_transform(raw, self.image_shape, self.crop_eval_borders, self.mode,
                                         uint8_images=uint8_images)
    sample['idx'] = np.int64(index)
    sample['filename'] = str(sample['filename'])
    return sample
