"""The report's charts, drawn with matplotlib into PNG files.

Figures are made with `matplotlib.figure.Figure`, not pyplot: no global state
and no GUI backend, so the report can run in any process (PNG output goes
through the Agg renderer).
"""
import datetime
from typing import Any, BinaryIO, Dict, List, Sequence

import matplotlib
from matplotlib.figure import Figure

matplotlib.use('Agg')  # for any pyplot user in this process; Figure needs none

_DPI = 100
_TRAIN, _EVAL = '#1f77b4', '#d62728'
_BLESSED, _NOT_BLESSED = '#2ca02c', '#d62728'


def training_curves(history: Dict[str, Any], out: BinaryIO) -> None:
  """Loss and pixel accuracy per epoch, train and eval, fine-tuning shaded.

  Args:
    history: the Trainer's training_history.json ('epochs', 'fine_tune_epoch').
    out: where the PNG goes (a binary file).
  """
  epochs = history['epochs']
  x = [e['epoch'] for e in epochs]
  figure = Figure(figsize=(10, 3.6), dpi=_DPI, layout='constrained')
  for axes, (key, title) in zip(figure.subplots(1, 2),
                                (('loss', 'loss'), ('accuracy', 'pixel accuracy'))):
    for prefix, label, colour in (('', 'train', _TRAIN), ('val_', 'eval', _EVAL)):
      y = [e.get(prefix + key) for e in epochs]
      if any(v is not None for v in y):
        axes.plot(x, [float('nan') if v is None else v for v in y], 'o-',
                  color=colour, label=label, markersize=3)
    start = history.get('fine_tune_epoch')
    if start is not None:
      # Epoch numbers are the x values: the phase begins between start-1 and start.
      axes.axvspan(start - 0.5, max(x) + 0.5, color='#ffdd55', alpha=0.25,
                   label='fine-tuning')
    axes.set_title(title)
    axes.set_xlabel('epoch')
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(fontsize='small')
  figure.savefig(out, format='png')


def run_history(rows: Sequence[Any], current_run: str, out: BinaryIO) -> None:
  """Mean IoU per run over time; blessed filled green, others hollow red.

  Args:
    rows: report_history.RunRecord-like objects, oldest first.
    current_run: the run id to ring (this report's run).
    out: where the PNG goes (a binary file).
  """
  figure = Figure(figsize=(10, 3.6), dpi=_DPI, layout='constrained')
  axes = figure.subplots()
  scored = [r for r in rows if r.mean_iou is not None]
  times = [datetime.datetime.fromtimestamp(r.started / 1000) for r in scored]
  axes.plot(times, [r.mean_iou for r in scored], '-', color='#999999', zorder=1)
  for row, when in zip(scored, times):
    blessed = bool(row.blessed)
    axes.scatter([when], [row.mean_iou], s=60, zorder=2,
                 facecolors=_BLESSED if blessed else 'white',
                 edgecolors=_BLESSED if blessed else _NOT_BLESSED)
    if row.run_id == current_run:
      axes.scatter([when], [row.mean_iou], s=220, zorder=1,
                   facecolors='none', edgecolors='black')
    if row.pushed_version:
      axes.annotate(f'pushed {row.pushed_version}', (when, row.mean_iou),
                    textcoords='offset points', xytext=(0, 9), ha='center',
                    fontsize='small')
  # Legend entries for the marker kinds, drawn off the data.
  axes.scatter([], [], s=60, facecolors=_BLESSED, edgecolors=_BLESSED, label='blessed')
  axes.scatter([], [], s=60, facecolors='white', edgecolors=_NOT_BLESSED,
               label='not blessed')
  axes.scatter([], [], s=220, facecolors='none', edgecolors='black', label='this run')
  axes.legend(fontsize='small', loc='lower right')
  axes.margins(x=0.1, y=0.2)  # room for the 'pushed' labels at the ends
  axes.set_ylabel('eval mean IoU')
  axes.set_title(f'{len(rows)} runs in the metadata store')
  axes.grid(alpha=0.3)
  figure.autofmt_xdate()
  figure.savefig(out, format='png')


def iou_histogram(ious: List[float], out: BinaryIO) -> None:
  """Histogram of the per-image IoU over the eval split."""
  figure = Figure(figsize=(6, 3), dpi=_DPI, layout='constrained')
  axes = figure.subplots()
  axes.hist(ious, bins=20, range=(0, 1), color=_TRAIN, edgecolor='white')
  axes.set_xlabel('per-image mean IoU')
  axes.set_ylabel('eval images')
  axes.yaxis.get_major_locator().set_params(integer=True)
  axes.grid(alpha=0.3)
  figure.savefig(out, format='png')
