"""The optional PyTorch reference (--torch_reference): imported only when asked for."""
import os

from absl import flags


def define_flags(fv):
  flags.DEFINE_bool('torch_reference', False, 'also time the PyTorch reference (same work, same run, '
                    'taking turns)', flag_values=fv)
  flags.DEFINE_string('torch_source', None, 'packnet-sfm checkout for --torch_reference (default: '
                      '$PACKNET_SFM_SOURCE)', flag_values=fv)


def source(fv):
  """The checkout to import the reference from ('' = the environment's), or None without --torch_reference."""
  return (fv.torch_source or '') if fv.torch_reference else None


def cpu_threads():
  """CPU cores XLA:CPU runs on (its thread pool covers the process's CPU affinity)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def import_torch(torch_source):
  """(torch, tools/torch_reference) with the reference importable and torch on `cpu_threads()` threads."""
  import torch_reference  # pylint: disable=import-outside-toplevel
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError('--torch_reference: torch is not installed (pip install torch, CPU wheel)') from None
  try:
    torch_reference.import_reference(torch_source)
  except ImportError as e:
    raise ValueError(str(e)) from None
  torch.set_num_threads(cpu_threads())
  return torch, torch_reference
