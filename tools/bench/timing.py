"""Call times taken in turns, so two libraries are timed under the same machine load."""
import time

SETTLE_S = 0.5  # pause between the two libraries' turns (see `interleaved_times`)
TURN = 5  # timed calls per turn


def interleaved_times(fns, iters, warmup, settle_s=0.0, block=1):
  """Per-fn lists of `iters` call times: `warmup` untimed rounds, then the fns take turns in blocks.

  Each turn is `block` back-to-back timed calls (plus one untimed call first when
  block > 1), after a `settle_s` pause. Turns keep both libraries under the same
  machine load; the pause and the untimed first call keep one library's
  spinning worker threads and cold caches out of the other's timings (on 2
  cores torch runs several times slower right after an XLA call, and XLA's
  first call after a pause is slow), so the figures are steady-state call times.
  """
  for _ in range(warmup):
    for fn in fns:
      fn()
  times = [[] for _ in fns]
  while len(times[0]) < iters:
    for fn, out in zip(fns, times):
      if settle_s:
        time.sleep(settle_s)
      if block > 1:
        fn()
      for _ in range(min(block, iters - len(out))):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
  return times


def library_times(fns, iters, warmup):
  """`interleaved_times`, taking paused turns of TURN calls when several libraries are compared."""
  return interleaved_times(fns, iters, warmup, *((SETTLE_S, TURN) if len(fns) > 1 else ()))


def define_flags(fv, warmup=1):
  """--iters and --warmup, shared by the timed jobs."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_integer('iters', 5, 'timed iterations', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('warmup', warmup, 'untimed iterations after compilation', lower_bound=0, flag_values=fv)
