"""Vendors statistics of the reference's random initialisation, per network and parameter.

    python tools/make_init_statistics.py --torch_source /path/to/packnet-sfm [--only NAME] [--seeds R]

Builds each reference network (CPU torch, through tools/torch_reference.py) for
R seeds and writes tests/fixtures/reference/init_stats_<NAME>.json: for every
state-dict entry, its Flax variable path (the converter's mapping,
packnet_jax/convert/keymap.py), its Flax-layout shape, the element count n, and
the pooled moments over the R·n draws: mean, std, max |x|, and the standardised
4th, 6th and 8th central moments. tests/test_reference_init.py compares a fresh
`Model.init` with them, with tolerances derived from n and R (the 6th and 8th
moments give the sampling error of the kurtosis, which tells uniform, normal and
truncated-normal laws apart). torch is needed here only, never by packnet_jax.
"""
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
from absl import flags

from packnet_jax import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT_DIR = REPO / 'tests' / 'fixtures' / 'reference'
COMMAND = 'python tools/make_init_statistics.py --torch_source /path/to/packnet-sfm'

# name → (reference class, version, seeds). Fewer seeds for the large PackNets (a build takes seconds);
# more for the small nets, whose one-element biases only get a bound check against R draws.
NETWORKS = {
    'DepthResNet18': ('DepthResNet', '18', 32),
    'DepthResNet50': ('DepthResNet', '50', 16),
    'PoseResNet18': ('PoseResNet', '18', 32),
    'PackNet01_1A': ('PackNet01', '1A', 8),
    'PackNetSlim01_1A': ('PackNetSlim01', '1A', 8),
    'PoseNet': ('PoseNet', None, 32),
}
_CHUNK = 1 << 23  # elements per float64 pass (bounds the temporaries to ~70 MB)
_POWERS = 8


def flax_module(cls, version):
  """Our network of the same class and version, with the inputs its init takes (64×64 images)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from packnet_jax.models import registry  # pylint: disable=import-outside-toplevel
  image = jnp.zeros((1, 64, 64, 3), jnp.float32)
  if cls.startswith('Pose'):
    return registry.build_pose_net(cls, version, nb_ref_imgs=2), (image, jnp.zeros((1, 2, 64, 64, 3), jnp.float32))
  return registry.build_depth_net(cls, version), (image,)


def torch_key_to_flax(module, inputs):
  """{torch key: (Flax path, Flax shape)} from `jax.eval_shape` of our init and the keymap."""
  import jax  # pylint: disable=import-outside-toplevel
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  from packnet_jax.convert import keymap  # pylint: disable=import-outside-toplevel
  template = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
  flat = traverse_util.flatten_dict({k: dict(v) for k, v in dict(template).items()})
  return {keymap.flax_path_to_torch_key(path): (path, tuple(leaf.shape)) for path, leaf in flat.items()}


class PowerSums:
  """Σ x^k (k = 1..8) in float64, max |x|, min and max, accumulated over chunks and seeds."""

  def __init__(self):
    self.count, self.sums = 0, np.zeros(_POWERS + 1)
    self.max_abs, self.lo, self.hi = 0.0, np.inf, -np.inf

  def add(self, tensor):
    import torch  # pylint: disable=import-outside-toplevel
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), _CHUNK):
      x = flat[start:start + _CHUNK].to(torch.float64)
      power = torch.ones_like(x)
      for k in range(1, _POWERS + 1):
        power = power * x
        self.sums[k] += float(power.sum())
      self.count += x.numel()
      self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
      self.max_abs = max(self.max_abs, float(x.abs().max()))

  def summary(self):
    """mean, std, max_abs and standardised central moments 4, 6, 8 (None for a constant)."""
    raw = self.sums / self.count
    raw[0] = 1.0
    mean = raw[1]
    if self.lo == self.hi:
      return {'mean': self.lo, 'std': 0.0, 'max_abs': self.max_abs, 'kurtosis': None, 'moment6': None,
              'moment8': None}
    # Central moments from raw ones: E[(x − m)^k] = Σ_j C(k, j) E[x^j] (−m)^(k−j).
    central = [sum(math.comb(k, j) * raw[j] * (-mean) ** (k - j) for j in range(k + 1)) for k in range(_POWERS + 1)]
    var = central[2]
    return {'mean': mean, 'std': float(np.sqrt(var)), 'max_abs': self.max_abs,
            'kurtosis': central[4] / var ** 2, 'moment6': central[6] / var ** 3, 'moment8': central[8] / var ** 4}


def statistics(name, torch_source):
  """The fixture dict of network `name` (see the module docstring)."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch_reference  # pylint: disable=import-outside-toplevel
  from packnet_jax.convert import keymap  # pylint: disable=import-outside-toplevel
  cls, version, seeds = NETWORKS[name]
  mapping = torch_key_to_flax(*flax_module(cls, version))
  sums, shapes = {}, {}
  for seed in range(seeds):
    torch.manual_seed(seed)
    net = torch_reference.build_network(cls, version, nb_ref_imgs=2, path=torch_source)
    for key, value in net.state_dict().items():
      if key.endswith('num_batches_tracked'):
        continue
      if key not in mapping:
        raise SystemExit(f'error: {name}: reference entry {key} has no Flax variable')
      path, flax_shape = mapping[key]
      if keymap.torch_shape(path[-1], flax_shape) != tuple(value.shape):
        raise SystemExit(f'error: {name}: {key}: torch shape {tuple(value.shape)} does not map to {flax_shape}')
      shapes[key] = flax_shape
      sums.setdefault(key, PowerSums()).add(value)
    print(f'{name}: seed {seed + 1}/{seeds}', file=sys.stderr, flush=True)
  missing = sorted(set(mapping) - set(sums))
  if missing:
    raise SystemExit(f'error: {name}: Flax variables without a reference entry: {missing}')
  entries = []
  for key, acc in sums.items():
    path, shape = mapping[key]
    entries.append({'path': '/'.join(path), 'torch_key': key, 'shape': list(shape),
                    'n': int(np.prod(shape)), **acc.summary()})
  return {'network': cls, 'version': version, 'seeds': seeds, 'torch': torch.__version__,
          'reference_commit': _commit(torch_source), 'command': COMMAND, 'entries': entries}


def _commit(torch_source):
  import torch_reference  # pylint: disable=import-outside-toplevel
  try:
    return subprocess.run(['git', '-C', str(torch_reference.source_dir(torch_source)), 'rev-parse', '--short', 'HEAD'],
                          capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def parse_flags(argv):
  """Parses argv (program name first) into a private FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_string('torch_source', None, 'packnet-sfm checkout (default $PACKNET_SFM_SOURCE)', flag_values=fv)
  flags.DEFINE_enum('only', None, sorted(NETWORKS), 'one network', flag_values=fv)
  flags.DEFINE_integer('seeds', None, "override every network's number of seeds", lower_bound=1, flag_values=fv)
  flags.DEFINE_string('out_dir', str(OUT_DIR), 'folder for the init_stats_*.json files', flag_values=fv)
  fv(argv)
  return fv


def _run(args):
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise ValueError('torch is not installed (pip install torch, CPU wheel)') from None
  import torch_reference  # pylint: disable=import-outside-toplevel
  torch_reference.source_dir(args.torch_source)
  for name in [args.only] if args.only else NETWORKS:
    if args.seeds is not None:
      NETWORKS[name] = NETWORKS[name][:2] + (args.seeds,)
    stats = statistics(name, args.torch_source)
    out = pathlib.Path(args.out_dir) / f'init_stats_{name}.json'
    out.write_text(json.dumps(stats, indent=1) + '\n')
    print(f'{out}: {len(stats["entries"])} entries, {stats["seeds"]} seeds')


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_flags, _run, argv)


if __name__ == '__main__':
  sys.exit(main())
