"""Weights & Biases as one more clu MetricWriter: the scalars and images TensorBoard gets.

`train.logging.create_writer` adds it on process 0 when `logging.wandb.enabled`.
The resolved config is the run config, and the run id is kept in
`<workdir>/wandb_run_id.txt`, so the same command resumed on another machine
continues the same W&B run. `wandb` is imported only here (an optional extra).
"""
import secrets
import string
import tempfile

from clu import metric_writers
import numpy as np

from packnet_jax.utils import storage

RUN_ID_FILE = 'wandb_run_id.txt'


def import_wandb():
  """The wandb module; ValueError (one line: what to install) without it."""
  try:
    import wandb  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError("config key 'logging.wandb.enabled': needs the wandb package: "
                     'pip install packnet-jax[wandb] (or pip install -r requirements-wandb.txt)') from None
  return wandb


def run_id(workdir):
  """The W&B run id of `workdir`, created (and stored there) on the first run."""
  path = storage.join(workdir, RUN_ID_FILE)
  if storage.isfile(path):
    return storage.read_text(path).strip()
  new_id = ''.join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's form
  storage.write_text(path, new_id + '\n')
  return new_id


class WandbWriter(metric_writers.MetricWriter):
  """Logs to one W&B run (process 0 only; the caller decides)."""

  def __init__(self, config, workdir):
    wandb = import_wandb()
    self._wandb = wandb
    cfg = config.logging.wandb
    # W&B keeps its own files (and, offline, the run itself) in a local folder: the workdir when
    # it is one, else a temporary one (online runs are synced as they go).
    local = tempfile.mkdtemp(prefix='packnet-wandb-') if storage.is_url(workdir) else workdir
    self.run = wandb.init(
        project=cfg.project or None, entity=cfg.entity or None, name=cfg.name or None,
        tags=list(cfg.tags) or None, mode=cfg.mode or None, id=run_id(workdir),
        resume='allow', config=config.to_dict(), dir=local)

  def write_scalars(self, step, scalars):
    self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

  def write_images(self, step, images):
    self.run.log({k: [self._wandb.Image(np.asarray(image)) for image in v] for k, v in images.items()},
                 step=int(step))

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata  # not used by the train loop

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_texts(self, step, texts):
    del step, texts

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def write_hparams(self, hparams):
    self.run.config.update(dict(hparams), allow_val_change=True)

  def flush(self):
    pass

  def close(self):
    self.run.finish()
