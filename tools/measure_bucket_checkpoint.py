"""Per-checkpoint write time and size of a PackNet01 + PoseNet TrainState: local folder, S3, GCS.

  python tools/measure_bucket_checkpoint.py [--saves 3] [--where local,s3,gs]

The buckets are the test suite's loopback servers (tests/lib/bucket_servers.py:
moto's S3 server, gcp-storage-emulator), so the figures measure the client
side and the protocol (orbax + tensorstore + fsspec), not a network. Each save
is synchronous (what an async save costs the writer thread in the background).
Needs requirements-cloud.txt.
"""
import os
import statistics
import sys
import tempfile
import time
import types

from absl import flags

from packnet_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state():
  import jax  # pylint: disable=import-outside-toplevel
  from configs import kitti  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import model_init  # pylint: disable=import-outside-toplevel
  from packnet_jax.train import train  # pylint: disable=import-outside-toplevel
  config = kitti.get_config()
  config.datasets.augmentation.image_shape = (64, 192)  # parameter count does not depend on it
  state, _ = train.create_train_state(config, model_init.build_model(config), 1000, load_weights=False)
  count = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  return state, count


def _size(path):
  from packnet_jax.utils import storage  # pylint: disable=import-outside-toplevel
  if not storage.is_url(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  return backend.fsspec_backend.fs(path).du(path)


def measure(workdir, state, saves):
  from packnet_jax.workdir import checkpoints as checkpointing  # pylint: disable=import-outside-toplevel
  from packnet_jax.utils import storage  # pylint: disable=import-outside-toplevel
  workdir = storage.use_bucket(workdir)
  manager = checkpointing.create_manager(workdir, keep=saves + 1, async_save=False)
  times = []
  for i in range(saves):
    step_state = state.replace(step=i + 1)
    start = time.perf_counter()
    checkpointing.save(manager, step_state, {'name': 'measure'})
    manager.wait_until_finished()
    times.append(time.perf_counter() - start)
  size = _size(storage.join(workdir, checkpointing.CHECKPOINT_DIR, str(saves)))
  start = time.perf_counter()
  checkpointing.restore(manager, state)
  restore = time.perf_counter() - start
  manager.close()
  return statistics.median(times), size, restore


def parse_args(argv):
  fv = flags.FlagValues()
  flags.DEFINE_integer('saves', 3, 'checkpoints saved per place (the median is reported)', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_list('where', ['local', 's3', 'gs'], 'places: local, s3, gs', flag_values=fv)
  fv(argv)
  return types.SimpleNamespace(**fv.flag_values_dict())


def _run(args):
  unknown = sorted(set(args.where) - {'local', 's3', 'gs'})
  if unknown:
    raise ValueError(f'--where: expected local, s3 or gs, got {unknown}')
  sys.path.insert(0, os.path.join(ROOT, 'tests'))   # the suite's loopback servers (tests/lib)
  from lib import bucket_servers  # pylint: disable=import-outside-toplevel
  state, count = _state()
  print(f'PackNet01 + PoseNet TrainState: {count / 1e6:.2f} M parameters (+ Adam moments)')
  print('| where | save (median of %d) | size | restore |' % args.saves)
  print('|---|---|---|---|')
  with tempfile.TemporaryDirectory() as tmp:
    where = args.where
    rows = [('local folder', lambda: measure(os.path.join(tmp, 'run'), state, args.saves))] \
        if 'local' in where else []
    for key, name, server in (('s3', 's3:// (moto server, loopback)', bucket_servers.s3_server),
                              ('gs', 'gs:// (gcp-storage-emulator, loopback)', bucket_servers.gcs_server)):
      def run(server=server):
        with server() as srv, bucket_servers.client_env(srv):
          return measure(f'{srv.url}/run', state, args.saves)
      if key in where:
        rows.append((name, run))
    for name, fn in rows:
      seconds, size, restore = fn()
      print(f'| {name} | {seconds:.2f} s | {size / 2**20:.1f} MiB | {restore:.2f} s |', flush=True)
  return 0


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv)."""
  return cli.run_main(parse_args, _run, argv)


if __name__ == '__main__':
  sys.exit(main())
