"""One JSON line per measurement, with the machine and library versions it was taken on."""
import json
import os
import platform
import statistics
import sys

import jax
import numpy as np


def environment():
  """Device kind and versions, attached to every record."""
  import flax  # pylint: disable=import-outside-toplevel
  device = jax.devices()[0]
  return {'platform': device.platform, 'device_kind': device.device_kind,
          'num_devices': jax.device_count(), 'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else None,
          'flax': flax.__version__, 'numpy': np.__version__, 'python': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def emit(record, out=None):
  """Prints one JSON line (and returns the record)."""
  record = dict(record, **environment())
  print(json.dumps(record, sort_keys=True), file=out or sys.stdout, flush=True)
  return record


def latency_stats(times, items):
  """Median, p90 and min of per-call seconds, and `items` per median call as a rate."""
  return {'median_s': statistics.median(times), 'p90_s': float(np.percentile(times, 90)),
          'min_s': min(times), 'iters': len(times), 'frames_per_s': items / statistics.median(times)}


def peak_memory_bytes():
  """Peak device memory if the backend reports it (GPU/TPU), else None."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def compiled_memory(compiled):
  """Compiled buffer sizes: temp, arguments, outputs, their sum, and outputs aliasing (donated) arguments.

  `device_memory_*` is what the program needs on the device: the sum less the
  outputs written into their (donated) arguments' buffers.
  """
  try:
    analysis = compiled.memory_analysis()
    sizes = {'temp_bytes': int(analysis.temp_size_in_bytes),
             'argument_bytes': int(analysis.argument_size_in_bytes),
             'output_bytes': int(analysis.output_size_in_bytes),
             'alias_bytes': int(analysis.alias_size_in_bytes)}
  except Exception:  # pylint: disable=broad-except
    return {}
  sizes['compiled_memory_bytes'] = sizes['temp_bytes'] + sizes['argument_bytes'] + sizes['output_bytes']
  sizes['compiled_memory_gib'] = sizes['compiled_memory_bytes'] / 2**30
  sizes['device_memory_bytes'] = sizes['compiled_memory_bytes'] - sizes['alias_bytes']
  sizes['device_memory_gib'] = sizes['device_memory_bytes'] / 2**30
  return sizes
