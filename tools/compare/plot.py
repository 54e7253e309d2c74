"""The PNG of both sides' validation curves (matplotlib is a tool-only dependency, imported here only).

Two panels, median-scaled AbsRel and δ<1.25 against the training step. Each side has one colour:
a thin line per seed and a thick line for the mean over seeds (at the steps every seed reached).
The dashed grey line is the constant-depth baseline (the mean of both sides' baselines: they
evaluate the same frames, so they agree up to float rounding).
"""
import numpy as np

COLOURS = {'port': 'tab:blue', 'reference': 'tab:orange'}
PANELS = (('abs_rel', 'baseline_abs_rel', 'AbsRel (median-scaled, lower is better)'),
          ('a1', 'baseline_a1', 'δ<1.25 (median-scaled, higher is better)'))


def plot(runs, path, title=''):
  """runs = {side: {seed: [rows]}} → PNG at `path`."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for ax, (key, base_key, label) in zip(axes, PANELS):
    baselines = []
    for side, seeds in runs.items():
      colour = COLOURS.get(side, 'tab:gray')
      curves = [rows for _, rows in sorted(seeds.items()) if rows]
      for seed, rows in sorted(seeds.items()):
        ax.plot([r['step'] for r in rows], [r[key] for r in rows], color=colour, lw=0.8, alpha=0.45)
        baselines += [r[base_key] for r in rows]
      if curves:
        common = sorted(set.intersection(*(set(r['step'] for r in rows) for rows in curves)))
        mean = [np.mean([next(r[key] for r in rows if r['step'] == s) for rows in curves]) for s in common]
        ax.plot(common, mean, color=colour, lw=2.5, label=f'{side} (mean of {len(curves)} seeds)')
    if baselines:
      ax.axhline(float(np.mean(baselines)), color='0.4', ls='--', lw=1.2, label='constant-depth baseline')
    ax.set_xlabel('training step')
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
