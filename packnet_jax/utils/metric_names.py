"""The depth metrics' names, and the reference's `checkpoint.monitor` names built from them.

Kept below every package that reads them: the evaluation reports them, the config check and the
workdir's best-checkpoint lookup parse a monitor name without importing the evaluation.
"""

METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3')

# The reference's metric names (`<metric><mode>`, model_wrapper.metrics_keys / metrics_modes) name
# the monitored value of checkpoint.monitor; its 'sqr_rel' is our 'sq_rel'.
MONITOR_MODES = ('_pp_gt', '_gt', '_pp', '')
_REFERENCE_NAMES = {'sqr_rel': 'sq_rel'}


def parse_monitor(name):
  """The reference's metric name → our (row, metric): 'abs_rel_pp_gt' → ('depth_pp_gt', 'abs_rel')."""
  for mode in MONITOR_MODES:
    if name.endswith(mode):
      metric = name[:len(name) - len(mode)]
      metric = _REFERENCE_NAMES.get(metric, metric)
      if metric in METRIC_NAMES:
        return 'depth' + mode, metric
  raise ValueError(f"checkpoint.monitor: expected <metric><mode> with a metric of {METRIC_NAMES} "
                   f"and a mode of ('', '_pp', '_gt', '_pp_gt'), e.g. 'abs_rel_pp_gt'; got {name!r}")


def monitor_mode(name, mode='auto'):
  """'min' or 'max'; 'auto' as the reference's ModelCheckpoint (max for accuracies such as a1)."""
  if mode != 'auto':
    return mode
  return 'max' if 'acc' in name or 'a1' in name or name.startswith('fmeasure') else 'min'
