"""Model cards: what a pushed model is for, what made it and how good it is.

One card per pushed version, as Markdown and as self-contained HTML (Jinja2,
templates/), written into the version it describes:
`<serving_model>/<version>/assets.extra/model_card.{md,html}` (TF Serving
ignores assets.extra, so the card travels with its model). The content comes
from the lineage in ML Metadata (pipeline/lineage.py), the Trainer's
model_report.json and the run summary (metrics, slices, checks).

local_runner.py writes the card after a run that pushed; for other runs
(e.g. on Kubeflow, or an older version):

  python -m pipeline.tools.model_card OUTPUT_DIR [--version V] [metadata flags]
"""
import dataclasses
import html
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from components import features
from pipeline import cli
from pipeline import lineage

CARD_DIR = 'assets.extra'
MARKDOWN, HTML = 'model_card.md', 'model_card.html'
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')
INTENDED_USE = (
    'Semantic segmentation of pets in photos: for each pixel of a 128x128 RGB '
    'image (larger ones are resized), one of 3 classes: pet, background, or '
    'border (the outline between them). Made for Oxford-IIIT Pet style '
    'photos: one cat or dog, roughly centred, in an everyday scene.')
OUT_OF_SCOPE = (
    'Not for other domains (other animals, people, medical or aerial images), '
    'several pets in one photo, or decisions about individual animals; its '
    'accuracy was measured only on the evaluation data below.')
_ENCODER_SOURCES = {'none': 'random initialisation (no pretrained weights)',
                    'imagenet': 'ImageNet weights of Keras\' MobileNetV2'}


def _number(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.4f}'


def _count(value: Optional[int]) -> str:
  return '-' if value is None else f'{value:,}'


def _metric_order(name: str) -> Tuple[int, str]:
  """Metrics in features.METRIC_NAMES order, any others after them."""
  order = features.METRIC_NAMES
  return (order.index(name) if name in order else len(order), name)


def _md_text(value: Any) -> str:
  """Data (e.g. a breed name from a file name) as inert Markdown text: no
  HTML a renderer would pass through; a '|' would end a table cell, a newline
  the row."""
  return html.escape(str(value), quote=False).replace('|', '\\|').replace('\n', ' ')


def _data(info: Dict[str, Any]) -> Dict[str, Any]:
  """Spans and example counts: training Examples (Transform's inputs) and
  the eval Examples the Evaluator read."""
  def rows(examples, split):
    return [{'span': e['span'], 'examples': _count(e['counts'].get(split)),
             'rejected': _count(e['rejected']), 'uri': e['uri'],
             'run_id': e['run_id']} for e in examples]
  train, evaluated = info['examples'], info['evaluation']['examples']
  unique = {e['id']: e for e in train + evaluated}.values()
  return {'train': rows(train, 'train'), 'eval': rows(evaluated, 'eval'),
          'train_total': _count(sum(e['counts'].get('train') or 0 for e in train)),
          'eval_total': _count(sum(e['counts'].get('eval') or 0 for e in evaluated)),
          'rejected_total': _count(sum(e['rejected'] or 0 for e in unique))}


def _encoder(info: Dict[str, Any], report: Dict[str, Any]) -> Dict[str, Any]:
  """Where the encoder's weights came from and which layers trained."""
  encoder = report.get('encoder') or info['encoder']['report'] or {}
  source = encoder.get('source', '?')
  weights = info['encoder']['weights']
  tuned = encoder.get('fine_tuned_blocks') or 0
  if not encoder.get('frozen', False):
    trained = 'the whole encoder trained with the decoder'
  elif tuned:
    trained = (f'encoder frozen while the decoder trained, then its top {tuned} '
               'blocks fine-tuned (BatchNorm frozen)')
  else:
    trained = 'encoder frozen; only the decoder trained'
  totals = report.get('totals', {})
  return {
      'source': _ENCODER_SOURCES.get(source, f'weights file {source}'),
      'sha256': (weights or {}).get('sha256') or encoder.get('sha256'),
      'artifact': weights, 'trained': trained,
      'trainable': _count(totals.get('trainable_params')),
      'frozen': _count(totals.get('frozen_params')),
      'total': _count(totals.get('total_params')),
      'blocks': [{'name': b['name'], 'trainable': _count(b['trainable_params']),
                  'frozen': _count(b['frozen_params']),
                  'status': ('trained' if b['trainable_params'] else
                             'frozen' if b['frozen_params'] else 'no weights')}
                 for b in report.get('blocks', [])]}


def _slices(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
  return [{'column': column, 'rows': [
      {'name': name, 'n': _count(values.get('num_examples')),
       'cells': [_number(values.get(m)) for m in features.METRIC_NAMES]}
      for name, values in sorted(by_value.items())]}
          for column, by_value in (summary.get('metrics_by_slice') or {}).items()
          if by_value]


def _checks(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
  rows = []
  for check in summary.get('checks') or []:
    bound = (f"≥ {check['threshold']:g}" if check['kind'] == 'lower_bound'
             else f"≥ baseline − {check['threshold']:g}")
    outcome = ('not gated (too few examples)' if not check['gated'] else
               'passed' if check['passed'] else 'FAILED')
    rows.append({'metric': check['metric'], 'slice': check['slice'] or 'overall',
                 'bound': bound, 'value': _number(check['value']),
                 'baseline': _number(check['baseline']), 'outcome': outcome})
  return rows


def limitations(summary: Dict[str, Any],
                min_slice_size: Optional[int] = None) -> Dict[str, Any]:
  """What the eval data shows the model does worst.

  Returns:
    {'weakest_class': (class, IoU) or None, 'weakest_slices': [(column,
    value name, mean IoU, examples)], one a slice column, 'small_slices':
    ['species:cat', ...] too small to be gated}.
  """
  metrics = summary.get('metrics') or {}
  classes = [(name, metrics[f'iou_{name}']) for name in features.CLASS_NAMES
             if metrics.get(f'iou_{name}') is not None]
  weakest = []
  for column, by_value in (summary.get('metrics_by_slice') or {}).items():
    scored = [(v[features.MEAN_IOU], name, v.get('num_examples'))
              for name, v in by_value.items() if v.get(features.MEAN_IOU) is not None]
    if scored:
      iou, name, n = min(scored)
      weakest.append((column, name, iou, n))
  small = {c['slice'] for c in summary.get('checks') or []
           if c['slice'] and not c['gated']}
  if min_slice_size:
    small |= {f'{column}:{name}'
              for column, by_value in (summary.get('metrics_by_slice') or {}).items()
              for name, v in by_value.items()
              if (v.get('num_examples') or 0) < min_slice_size}
  return {'weakest_class': min(classes, key=lambda c: c[1]) if classes else None,
          'weakest_slices': weakest, 'small_slices': sorted(small)}


def card_context(summary: Dict[str, Any], info: Dict[str, Any],
                 report: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """Everything the templates show, formatted (numbers as text).

  Args:
    summary: the run summary (run_summary.json) of the run that pushed.
    info: `lineage.describe` of the push.
    report: the Trainer's model_report.json, or None.
  """
  report = report or {}
  baseline = summary.get('baseline_metrics') or {}
  metrics = [{'name': name, 'value': _number(value),
              'baseline': _number(baseline.get(name)),
              'delta': (f'{value - baseline[name]:+.4f}'
                        if baseline.get(name) is not None else '-')}
             for name, value in sorted((summary.get('metrics') or {}).items(),
                                       key=lambda kv: _metric_order(kv[0]))]
  distribution = report.get('distribution') or {}
  trainer = info['trainer']
  return {
      'pushed': info['pushed'], 'model': info['model'],
      'run_id': summary.get('run_id') or info['pushed']['run_id'],
      'blessed': summary.get('blessed', info['blessing']['blessed']),
      'intended_use': INTENDED_USE, 'out_of_scope': OUT_OF_SCOPE,
      'image_size': features.IMAGE_SIZE, 'classes': features.CLASS_NAMES,
      'data': _data(info), 'encoder': _encoder(info, report),
      'training': sorted((report.get('training') or
                          (trainer['custom_config'] or {}).get('training') or
                          {}).items()),
      'distribution': (f"{distribution['strategy']}, {distribution['replicas']} "
                       'replica(s)' if distribution else None),
      'code_fingerprint': trainer['code_fingerprint'],
      'metrics': metrics, 'metric_names': features.METRIC_NAMES,
      'slices': _slices(summary), 'checks': _checks(summary),
      'failed_checks': summary.get('failed_checks') or [],
      'baseline': info['baseline'],
      'limitations': limitations(summary, info['evaluation'].get('min_slice_size')),
      'number': _number, 'count': _count,
  }


def render(context: Dict[str, Any]) -> Tuple[str, str]:
  """(Markdown, HTML) of a card; HTML-escaped by Jinja2's autoescape."""
  import jinja2  # pylint: disable=g-import-not-at-top
  env = jinja2.Environment(
      loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True,
      autoescape=jinja2.select_autoescape(enabled_extensions=('html.j2',),
                                          default_for_string=False),
      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
  env.filters['md'] = _md_text
  return (env.get_template('model_card.md.j2').render(context),
          env.get_template('model_card.html.j2').render(context))


def write_model_card(summary: Dict[str, Any], store,
                     info: Optional[Dict[str, Any]] = None) -> Tuple[str, str]:
  """Writes the card of the model `summary['pushed_model']` into its version.

  Args:
    summary: the run summary of the run that pushed it.
    store: the ML Metadata store of that run.
    info: its `lineage.describe`, if already read.

  Returns:
    (Markdown path, HTML path) under `<pushed version>/assets.extra/`.

  Raises:
    ValueError: the summary names no pushed model.
    lineage.LineageError: the store has no record of that push.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  destination = summary.get('pushed_model')
  if not destination:
    raise ValueError('the run pushed no model: no model card to write')
  if info is None:
    info = lineage.describe(store, lineage.find_push(store, destination=destination))
  markdown, page = render(card_context(
      summary, info, lineage.read_model_report(info['model']['uri'])))
  directory = os.path.join(destination, CARD_DIR)
  tf.io.gfile.makedirs(directory)
  paths = os.path.join(directory, MARKDOWN), os.path.join(directory, HTML)
  for path, text in zip(paths, (markdown, page)):
    with tf.io.gfile.GFile(path, 'w') as f:
      f.write(text)
  return paths


# --- the command line --------------------------------------------------------------

def _evaluation_options(info: Dict[str, Any]):
  """EvaluatorOptions equal to the thresholds the Evaluator recorded, so the
  summary's `checks` show the run's thresholds, not today's defaults."""
  from components.evaluator.options import EvaluatorOptions  # pylint: disable=g-import-not-at-top
  bounds, regressions, slices = {}, {}, {}
  for t in info['evaluation']['thresholds']:
    if t['slice'] is None:
      (bounds if t['kind'] == 'lower_bound' else regressions)[t['metric']] = t['threshold']
    elif t['kind'] == 'lower_bound' and ':' not in t['slice']:  # feature-wide
      slices[f"{t['slice']}:{t['metric']}"] = t['threshold']
  values = {'min_mean_iou': bounds.pop(features.MEAN_IOU, 0.0), 'thresholds': bounds,
            'max_regression': regressions.pop(features.MEAN_IOU, 0.0),
            'max_regressions': regressions, 'slice_thresholds': slices,
            'min_slice_size': info['evaluation'].get('min_slice_size')}
  known = {f.name for f in dataclasses.fields(EvaluatorOptions)}
  return EvaluatorOptions(**{k: v for k, v in values.items()
                             if k in known and v is not None})


def summary_for(store, info: Dict[str, Any], metadata) -> Dict[str, Any]:
  """The run summary of the run that made a push.

  Its output dir's run_summary.json when that is the same run; else rebuilt
  from ML Metadata (pipeline/tools/summary.py); else, when the store records
  no TFX run (another orchestrator's schema), the lineage's own metrics.
  """
  destination, run_id = info['pushed']['destination'], info['pushed']['run_id']
  output_dir = os.path.dirname(os.path.dirname(destination))
  saved = os.path.join(output_dir, 'run_summary.json')
  if os.path.isfile(saved):
    with open(saved, encoding='utf-8') as f:
      summary = json.load(f)
    if summary.get('run_id') == run_id and summary.get('pushed_model') == destination:
      return summary
  if run_id:
    # pylint: disable=g-import-not-at-top
    from pipeline import settings
    from pipeline.tools import summary as summary_lib
    # pylint: enable=g-import-not-at-top
    config = settings.PipelineConfig(output_dir=output_dir, metadata=metadata,
                                     evaluation=_evaluation_options(info))
    return summary_lib.build_summary(config, store, run_id)
  evaluation = info['evaluation']
  return {'run_id': None, 'blessed': info['blessing']['blessed'],
          'metrics': evaluation['metrics'],
          'baseline_metrics': evaluation['baseline_metrics'],
          'failed_checks': [], 'pushed_model': destination}


def main(argv: Optional[Sequence[str]] = None) -> int:
  lineage.quiet()
  try:
    options, target = lineage.parse_args(
        argv, lineage.Selection, 'Writes the model card of a pushed model '
        '(default: the newest) into <version>/assets.extra/.')
    store, push = lineage.open_target(target, options)
  except (cli.UsageError, lineage.LineageError) as e:
    print(f'error: {e}', file=sys.stderr)
    return lineage.EXIT_USAGE
  except lineage.StoreUnavailable as e:
    print(f'error: {e}', file=sys.stderr)
    return lineage.EXIT_FAILED
  except Exception as e:  # pylint: disable=broad-except
    print(f'error: {cli.one_line(e)}', file=sys.stderr)
    return lineage.EXIT_FAILED
  try:
    info = lineage.describe(store, push)
    paths = write_model_card(summary_for(store, info, options.metadata), store, info)
  except Exception as e:  # pylint: disable=broad-except
    print(f'error: model card not written: {cli.one_line(e)}', file=sys.stderr)
    return lineage.EXIT_FAILED
  print('\n'.join(paths))
  return lineage.EXIT_OK


if __name__ == '__main__':
  sys.exit(main())
