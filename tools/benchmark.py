r"""Benchmarks: network forward, train step, data pipeline, multi-device scaling, start-up.

  python tools/benchmark.py forward --network all --shape 192,640 [--batch 1 --dtype float32 --iters 5]
  python tools/benchmark.py forward --network PackNet01 --torch_reference --torch_source /path/to/packnet-sfm
  python tools/benchmark.py train_step --config=configs/kitti.py --shape 192,640 --batch 4 --compile_only \
      [--config.model.remat=full]
  python tools/benchmark.py train_step --config=configs/kitti_resnet18.py --batch 2 --torch_reference
  python tools/benchmark.py data [--path KITTI_ROOT --split splits/train.txt] --shape 96,320
  python tools/benchmark.py data --source_shape 375,1242 --shape 192,640 --depth_type velodyne [--records]
  python tools/benchmark.py scaling --network DepthResNet18 --shape 192,640 --batch 1
  python tools/benchmark.py start_up --network all --shape 192,640

Every measurement prints one JSON line with the device kind and library
versions. Compilation and warm-up iterations are excluded from the timings
(compile time is reported separately); every timed call is followed by
`block_until_ready`. Weights are random (timing does not depend on them) and
are made without running the initialiser. The XLA:CPU defaults of
`packnet_jax.utils.xla_flags` apply unless XLA_FLAGS is set. Each job is a
module of tools/bench/; `JOB --help` lists its flags.

`--torch_reference` also times the PyTorch reference doing the same work, in
the same process, taking turns with ours in blocks of calls (so both see the same
machine load), with torch on as many threads as the CPU cores XLA uses; the
reference's code comes from a packnet-sfm checkout given by `--torch_source`
or $PACKNET_SFM_SOURCE (see tools/torch_reference.py). Records then carry
`jax_over_torch_time` (< 1: ours is faster).
"""
import sys

from bench import data, forward, scaling, start_up, train_step
from packnet_jax import cli

JOBS = {module.__name__.split('.')[-1]: (module.parse_flags, module.run)
        for module in (forward, train_step, data, scaling, start_up)}


def main(argv=None):
  """CLI entry point; argv has the program name first (default: sys.argv). Returns the exit status."""
  return cli.run_job({name: (parse, lambda fv, run=run: run(fv) and 0) for name, (parse, run) in JOBS.items()},
                     argv, __doc__)


if __name__ == '__main__':
  sys.exit(main())
