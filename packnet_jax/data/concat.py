"""Several datasets as one training source: the reference's ConcatDataset.

`ConcatSource` numbers the samples of its datasets one after another (dataset
0's first, each already repeated `repeat[i]` times), so the one shuffled,
resumable index stream of `pipeline` mixes them and the epoch length is their
sum. A batch stacks samples of different datasets, so their samples must agree
in keys, dtypes and shapes (intrinsics are per-sample values, which is fine);
`check_compatible` probes one sample of each and says in one line what differs.
"""
import bisect

import numpy as np


def _spec(sample):
  return {k: ('str', ()) if isinstance(v, str) else (str(np.asarray(v).dtype), np.asarray(v).shape)
          for k, v in sample.items()}


def check_compatible(sources, names, where):
  """Raises ValueError (one line, starting with `where`) if the sources' samples cannot share a batch.

  Evaluation batches pad GT depth to the largest map (`pipeline`), so there only its size may differ.
  """
  specs = [_spec(s(0, 0, uint8_images=True)) for s in sources]
  if sources[0].mode != 'train':
    specs = [{k: (v[0], v[1][-1:]) if k in ('depth', 'input_depth') else v for k, v in spec.items()}
             for spec in specs]
  for name, spec in zip(names[1:], specs[1:]):
    diffs = []
    for key in sorted(set(specs[0]) | set(spec)):
      if key not in spec:
        diffs.append(f'{key!r} only in {names[0]}')
      elif key not in specs[0]:
        diffs.append(f'{key!r} only in {name}')
      elif spec[key] != specs[0][key]:
        diffs.append(f'{key!r} {specs[0][key][0]}{list(specs[0][key][1])} vs {spec[key][0]}{list(spec[key][1])}')
    if diffs:
      raise ValueError(f'{where}: samples of {names[0]} and {name} cannot share a batch: {"; ".join(diffs)} '
                       '(set the same image_shape, depth_type and input_depth_type, or train on them separately)')


class ConcatSource:
  """Callable (index, epoch) → sample over datasets numbered one after another."""

  def __init__(self, sources, names, where='datasets.train'):
    check_compatible(sources, names, where)
    self.sources, self.names = list(sources), list(names)
    self.mode = self.sources[0].mode
    self.offsets = np.cumsum([0] + [len(s) for s in self.sources]).tolist()

  def __len__(self):
    return self.offsets[-1]

  def dataset_of(self, index):
    """Which dataset the concatenated `index` belongs to."""
    if not 0 <= index < len(self):
      raise IndexError(f'index {index} outside [0, {len(self)})')
    return bisect.bisect_right(self.offsets, int(index)) - 1

  def __call__(self, index, epoch=0, uint8_images=False):
    i = self.dataset_of(int(index))
    sample = self.sources[i](int(index) - self.offsets[i], epoch, uint8_images=uint8_images)
    sample['idx'] = np.int64(index)
    return sample
