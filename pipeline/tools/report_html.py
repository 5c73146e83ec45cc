"""The report's page: static HTML, its pictures referenced as files beside it.

Every value from a run (file names, breeds, run ids, messages) is escaped.
Tables and figures carry ids and data- attributes so tests (and scripts) can
read the numbers back without scraping text.
"""
import dataclasses
import datetime
import html
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from components import features
from pipeline.tools import report_eval

_CLASS_METRICS = tuple(f'iou_{name}' for name in features.CLASS_NAMES)
_SLICE_COLUMNS = ((features.MEAN_IOU, 'mean IoU'),) + tuple(
    (metric, f'IoU {name}') for metric, name in zip(_CLASS_METRICS, features.CLASS_NAMES)
) + ((features.PIXEL_ACCURACY, 'pixel accuracy'),)
_STYLE = '''
body{font-family:sans-serif;margin:1em 2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0}
td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}
th:first-child,td:first-child{text-align:left}
#metrics-table td:last-child,table[id^=slice-] td:last-child{text-align:left}
.pass{color:#1a7f37}.fail{color:#c62828;font-weight:bold}.ungated{color:#888}
.blessed{color:#1a7f37}.not-blessed{color:#c62828}
tr.current{background:#fff6d5}
figure{margin:8px 0}figcaption{font-size:small}
img{max-width:100%;height:auto}
'''


@dataclasses.dataclass
class Content:
  """Everything the page shows.

  Attributes:
    summary: the run summary.
    scores: the eval split's per-image scores and confusion matrices.
    slices: {feature: {value: {metric: value, 'num_examples': n}}}.
    slices_from_evaluator: whether `slices` are TFMA's (else the report's own).
    training: the Trainer's training_history.json, or None.
    runs: the pipeline's runs (report_history.RunRecord), or None if not read.
    history_problem: why the runs could not be read, or None.
    files: chart name ('histogram', 'curves', 'history') -> PNG file name.
    picture: eval index -> its picture's file name.
    csv_name: the per-image CSV's file name.
    scale: how much the pictures are scaled up from model size.
  """
  summary: Dict[str, Any]
  scores: report_eval.EvalScores
  slices: Dict[str, Dict[str, Dict[str, Any]]]
  slices_from_evaluator: bool
  training: Optional[Dict[str, Any]]
  runs: Optional[List[Any]]
  history_problem: Optional[str]
  files: Dict[str, str]
  picture: Callable[[int], str]
  csv_name: str
  scale: int


def _e(value: Any) -> str:
  return html.escape(str(value))


def _num(value: Optional[float], digits: int = 4) -> str:
  return '&ndash;' if value is None else f'{value:.{digits}f}'


def _table(table_id: str, headers: Sequence[str], rows: Iterable[str]) -> str:
  """A table of escaped headers and ready-made <tr> rows."""
  head = ''.join(f'<th>{_e(h)}</th>' for h in headers)
  return f'<table id="{table_id}"><tr>{head}</tr>{"".join(rows)}</table>'


def _row(cells: Sequence[str], attributes: str = '') -> str:
  return f'<tr{attributes}>' + ''.join(f'<td>{c}</td>' for c in cells) + '</tr>'


def _check_text(check: Dict[str, Any]) -> str:
  """'≥ 0.5000: pass' and the like, coloured by outcome."""
  if check['kind'] == 'max_regression':
    rule = f'&ge; baseline &minus; {check["threshold"]:.4f}'
  else:
    rule = f'&ge; {check["threshold"]:.4f}'
  if not check.get('gated', True):
    return f'<span class="ungated">{rule}: not gated (slice too small)</span>'
  outcome = 'pass' if check['passed'] else 'fail'
  return f'<span class="{outcome}">{rule}: {outcome}</span>'


def _checks_of(checks: List[Dict[str, Any]], metric: str, where: Optional[str]) -> str:
  return '<br>'.join(_check_text(c) for c in checks
                     if c['metric'] == metric and c.get('slice') == where)


def _header(summary: Dict[str, Any]) -> str:
  verdict = ('<span class="blessed">blessed</span>' if summary['blessed'] else
             '<span class="not-blessed">not blessed</span>')
  pushed = (f'pushed to {_e(summary["pushed_model"])}' if summary.get('pushed_model')
            else 'not pushed')
  ex = summary.get('examples') or {}
  counts = ', '.join(f'{k} {_e(ex.get(k))}' for k in ('train', 'eval', 'rejected')
                     if ex.get(k) is not None)
  model = summary.get('model') or {}
  encoder = model.get('encoder') or {}
  params = (f'<p>Model: {model["trainable_params"]:,} trainable, '
            f'{model["frozen_params"]:,} frozen parameters'
            + (f'; encoder {_e(encoder.get("source"))}' if encoder else '') + '.</p>'
            if model.get('trainable_params') is not None else '')
  warnings = ''.join(f'<li>{_e(w)}</li>' for w in summary.get('warnings') or [])
  return (f'<h1>Pet segmentation: run {_e(summary["run_id"])}</h1>'
          f'<p id="verdict">Model {verdict}; {pushed}.</p>'
          f'<p>Examples: {counts}.</p>{params}'
          + (f'<ul class="warnings">{warnings}</ul>' if warnings else ''))


def _metrics(summary: Dict[str, Any]) -> str:
  base = summary.get('baseline_metrics') or {}
  checks = summary.get('checks') or []
  rows = []
  for name, value in sorted(summary['metrics'].items()):
    b = base.get(name)
    change = '' if b is None else f'{value - b:+.4f}'
    rows.append(_row([_e(name), _num(value), _num(b), change,
                      _checks_of(checks, name, None)]))
  failed = ''.join(f'<li>{_e(c)}</li>' for c in summary.get('failed_checks') or [])
  return ('<h2 id="metrics">Metrics</h2>'
          + _table('metrics-table', ['metric', 'candidate', 'baseline', 'change',
                                     'blessing checks'], rows)
          + ('' if base else '<p>No baseline: no model was blessed before.</p>')
          + (f'<p>Failed checks (TFMA):</p><ul>{failed}</ul>' if failed else ''))


def _slices(content: Content) -> str:
  checks = content.summary.get('checks') or []
  source = ('the Evaluator&rsquo;s (TFMA) values' if content.slices_from_evaluator else
            'computed by the report from its own predictions (this run&rsquo;s '
            'Evaluator did not slice)')
  parts = [f'<h2 id="slices">Slices</h2><p>Pixel metrics per slice, {source}.</p>']
  for column in (features.SPECIES_KEY, features.BREED_KEY):
    rows = []
    for value, metrics in sorted(content.slices.get(column, {}).items()):
      where = f'{column}:{value}'
      slice_checks = '<br>'.join(f'{_e(c["metric"])} {_check_text(c)}'
                                 for c in checks if c.get('slice') == where)
      rows.append(_row([_e(value), _e(metrics.get('num_examples', ''))] +
                       [_num(metrics.get(m)) for m, _ in _SLICE_COLUMNS] + [slice_checks],
                       f' data-slice="{_e(value)}"'))
    parts.append(f'<h3>By {_e(column)}</h3>' + _table(
        f'slice-{column}',
        [column, 'images'] + [t for _, t in _SLICE_COLUMNS] + ['checks'], rows))
  return ''.join(parts)


def _confusion(counts: np.ndarray, num_images: int) -> str:
  names = features.CLASS_NAMES
  headers = ['truth \\ prediction'] + list(names) + ['total']
  count_rows, fraction_rows = [], []
  for truth, name in enumerate(names):
    row = counts[truth]
    total = int(row.sum())
    count_rows.append('<tr><td>' + _e(name) + '</td>' + ''.join(
        f'<td class="count">{int(c)}</td>' for c in row) + f'<td>{total}</td></tr>')
    fraction_rows.append(_row([_e(name)] + [
        (f'{c / total:.3f}' if total else '&ndash;') for c in row] + [str(total)]))
  return (f'<h2 id="confusion">Confusion matrix</h2><p>Eval pixels of {num_images} '
          f'images at model size ({features.IMAGE_SIZE}&times;{features.IMAGE_SIZE}); '
          'rows are the truth, columns the prediction.</p>'
          '<h3>Pixel counts</h3>' + _table('confusion-counts', headers, count_rows) +
          '<h3>Row-normalised (recall per true class)</h3>'
          + _table('confusion-normalised', headers, fraction_rows))


def _figures(section: str, pictures: List[report_eval.Picture], content: Content) -> str:
  figures = []
  for p in pictures:
    s = p.score
    figures.append(
        f'<figure data-index="{s.index}" data-iou="{s.iou:.6f}">'
        f'<img src="{content.picture(s.index)}" alt="{_e(s.name)}">'
        f'<figcaption>IoU {s.iou:.4f} &middot; {_e(s.name)} ({_e(s.species)}, '
        f'{_e(s.breed)})</figcaption></figure>')
  return f'<div id="{section}">{"".join(figures)}</div>'


def _per_image(content: Content) -> str:
  scores = content.scores
  ious = [s.iou for s in scores.images]
  k = len(scores.worst)
  rows = (_row([str(s.index), _e(s.name), _e(s.species), _e(s.breed),
                f'{s.iou:.4f}', f'{s.pixel_accuracy:.4f}'],
               f' data-index="{s.index}" data-iou="{s.iou:.6f}"')
          for s in scores.images)
  return (
      f'<h2 id="per-image">Per-image IoU</h2><p>Mean IoU of each of the {len(ious)} eval '
      'images over the classes present in its truth or prediction: mean '
      f'{np.mean(ious):.4f}, median {np.median(ious):.4f}. All rows: '
      f'<a href="{content.csv_name}">{content.csv_name}</a>.</p>'
      f'<img src="{content.files["histogram"]}" alt="per-image IoU histogram">'
      f'<p>Each picture: image | true mask | predicted mask | overlay '
      f'({features.IMAGE_SIZE}&times;{features.IMAGE_SIZE}, '
      f'shown &times;{content.scale}); '
      'green = pet, dark = background, yellow = border.</p>'
      f'<h3>The {k} worst</h3>' + _figures('worst', scores.worst, content) +
      f'<h3>The {len(scores.best)} best</h3>' + _figures('best', scores.best, content) +
      f'<details><summary>All {len(ious)} images</summary>' +
      _table('per-image-table',
             ['#', 'file', 'species', 'breed', 'IoU', 'pixel accuracy'], rows) +
      '</details>')


def _training(content: Content) -> str:
  history = content.training
  if not history or not history.get('epochs'):
    return ('<h2 id="training">Training</h2><p>No training history: the model was '
            'trained before the Trainer saved one.</p>')
  epochs = history['epochs']
  start = history.get('fine_tune_epoch')
  phases = (f'fine-tuning (shaded) from epoch {start}' if start is not None
            else 'no fine-tuning phase')
  keys = ('loss', 'accuracy', 'val_loss', 'val_accuracy')
  rows = (_row([str(e['epoch']), _e(e['phase'])] + [_num(e.get(k)) for k in keys])
          for e in epochs)
  return (f'<h2 id="training">Training</h2><p>{len(epochs)} epochs, {phases}; '
          'accuracy is pixel accuracy, eval is the eval split.</p>'
          f'<img src="{content.files["curves"]}" alt="training curves">'
          '<details><summary>Per epoch</summary>' + _table(
              'epochs-table', ['epoch', 'phase', 'train loss', 'train accuracy',
                               'eval loss', 'eval accuracy'], rows) + '</details>')


def _history(content: Content) -> str:
  head = '<h2 id="history">Runs of this pipeline</h2>'
  if content.history_problem:
    return head + ('<p>Not shown: the metadata store could not be read '
                   f'({_e(content.history_problem)}).</p>')
  if not content.runs:
    return head + '<p>Not shown: the report was written without the metadata store.</p>'
  current = content.summary['run_id']
  rows = []
  for r in reversed(content.runs):  # newest first
    started = datetime.datetime.fromtimestamp(r.started / 1000).strftime(
        '%Y-%m-%d %H:%M:%S')
    blessed = {None: '&ndash;', True: '<span class="blessed">yes</span>',
               False: '<span class="not-blessed">no</span>'}[r.blessed]
    rows.append(_row([_e(r.run_id), started, _num(r.mean_iou), blessed,
                      _e(r.pushed_version or '')],
                     f' data-run="{_e(r.run_id)}"' +
                     (' class="current"' if r.run_id == current else '')))
  return (head + f'<p>{len(content.runs)} runs in the metadata store, newest first '
          '(local time); filled markers were blessed; this run is ringed.</p>'
          f'<img src="{content.files["history"]}" alt="mean IoU per run">'
          + _table('history-table', ['run', 'started', 'mean IoU', 'blessed',
                                     'pushed version'], rows))


def page(content: Content) -> str:
  """The whole index.html."""
  body = (_header(content.summary) + _metrics(content.summary) + _slices(content) +
          _confusion(content.scores.confusion, len(content.scores.images)) +
          _per_image(content) + _training(content) + _history(content))
  return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<title>Pet segmentation: run {_e(content.summary["run_id"])}</title>'
          f'<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n')
