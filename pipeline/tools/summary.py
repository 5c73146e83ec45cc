"""Reads one pipeline run back from ML Metadata and writes run_summary.json.

Everything here comes from the metadata store and the artifacts it points to,
so the summary is exactly what the orchestrator recorded (cached executions
included: they link to the artifacts of the run that produced them).
"""
import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.example_gen import executor as example_gen_executor
from components.trainer import module as trainer_lib
from components.trainer import tuning
from pipeline import pipeline as pipeline_lib
from pipeline import runs
from pipeline import settings


MAX_LISTED_REJECTS = 100  # the quarantine files hold them all


def _metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
  """{'candidate': {name: value}, 'baseline': {...}} from TFMA's results."""
  by_model: Dict[str, Dict[str, float]] = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    for kv in metrics.metric_keys_and_values:
      if kv.key.is_diff or not kv.value.HasField('double_value'):
        continue
      model = kv.key.model_name or 'candidate'
      by_model.setdefault(model, {})[kv.key.name] = kv.value.double_value.value
  return by_model


def _failed_checks(evaluation_uri: str) -> List[str]:
  result = tfma.load_validation_result(evaluation_uri)
  return [f'{f.metric_key.name}{" (vs baseline)" if f.metric_key.is_diff else ""}:'
          f' {f.message}'
          for per_slice in result.metric_validations_per_slice
          for f in per_slice.failures]


def build_summary(config: settings.PipelineConfig, store, run_id: str,
                  error: Optional[str] = None) -> Dict[str, Any]:
  """The run summary dict (see README) of run `run_id`."""
  run = runs.read_run(store, run_id)
  summary: Dict[str, Any] = {
      'data_root': config.data_root, 'run_id': run.run_id, 'error': error,
      'blessed': False,
      'metrics': {}, 'baseline_metrics': None, 'failed_checks': [],
      'pushed_model': None, 'examples': {}, 'examples_uri': None,
      'quarantine': None, 'model': None, 'report': None, 'warnings': [],
      'hyperparameters': None, 'rejected_entries': [],
      'components': {n: {'state': v.state, 'seconds': v.seconds}
                     for n, v in run.nodes.items()},
  }
  examples = run.output(pipeline_lib.EXAMPLE_GEN, 'examples')
  if examples is not None:
    counts = json.loads(runs.custom_property(
        examples, example_gen_executor.SPLIT_COUNTS_PROPERTY) or '{}')
    summary['examples'] = {split: c['examples'] for split, c in counts.items()}
    summary['examples']['rejected'] = runs.custom_property(
        examples, example_gen_executor.NUM_REJECTED_PROPERTY)
    summary['quarantine'] = runs.custom_property(
        examples, example_gen_executor.QUARANTINE_URI_PROPERTY)
    summary['examples']['span'] = runs.custom_property(examples, 'span')
    summary['examples_uri'] = examples.uri
  elif run.nodes.get(pipeline_lib.EXAMPLE_GEN, None) is not None:
    # A failed ingestion's outputs are gone; the executor kept its
    # quarantine under <failed_quarantine_dir>/<execution id> (= the
    # examples artifact's folder name).
    kept = os.path.join(config.failed_quarantine_dir, str(
        run.nodes[pipeline_lib.EXAMPLE_GEN].execution.id))
    if tf.io.gfile.isdir(kept):
      summary['quarantine'] = kept
  if summary['quarantine'] and tf.io.gfile.isdir(summary['quarantine']):
    records = example_gen_executor.read_quarantine(summary['quarantine'])
    summary['rejected_entries'] = [
        {k: r[k] for k in ('list_file', 'entry', 'reason') if k in r}
        for r in records[:MAX_LISTED_REJECTS]]
  model = run.output(pipeline_lib.TRAINER, 'model')
  if model is not None:
    report_path = os.path.join(model.uri, trainer_lib.REPORT_JSON)
    if tf.io.gfile.exists(report_path):
      with tf.io.gfile.GFile(report_path) as f:
        report = json.load(f)
      summary['model'] = {'uri': model.uri,
                          'trainable_params': report['totals']['trainable_params'],
                          'frozen_params': report['totals']['frozen_params'],
                          'encoder': report.get('encoder')}
  tuned = run.output(pipeline_lib.TUNER, 'best_hyperparameters')
  if tuned is not None:
    with tf.io.gfile.GFile(os.path.join(tuned.uri, 'best_hyperparameters.txt')) as f:
      summary['hyperparameters'] = tuning.chosen(json.load(f))
  evaluation = run.output(pipeline_lib.EVALUATOR, 'evaluation')
  if evaluation is not None:
    by_model = _metrics(evaluation.uri)
    summary['metrics'] = by_model.get('candidate', {})
    summary['baseline_metrics'] = by_model.get('baseline')
    summary['failed_checks'] = _failed_checks(evaluation.uri)
  blessing = run.output(pipeline_lib.EVALUATOR, 'blessing')
  summary['blessed'] = bool(blessing is not None and
                           runs.custom_property(blessing, 'blessed'))
  pushed = run.output(pipeline_lib.PUSHER, 'pushed_model')
  if pushed is not None and runs.custom_property(pushed, 'pushed'):
    summary['pushed_model'] = runs.custom_property(pushed, 'pushed_destination')
  return summary


def save_summary(config: settings.PipelineConfig, summary: Dict[str, Any]) -> None:
  with tf.io.gfile.GFile(config.summary_path, 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)


def format_summary(summary: Dict[str, Any]) -> str:
  """A short readable report of the summary for the terminal."""
  ex = summary['examples']
  lines = [f"Run {summary['run_id']} on {summary['data_root']}",
           f"  examples: train {ex.get('train')}, eval {ex.get('eval')}, "
           f"rejected {ex.get('rejected')}"
           + (f" (quarantine: {summary['quarantine']})" if ex.get('rejected') else '')]
  if summary['model']:
    lines.append(f"  model: {summary['model']['trainable_params']:,} trainable, "
                 f"{summary['model']['frozen_params']:,} frozen parameters")
    encoder = summary['model'].get('encoder') or {}
    if encoder:
      digest = f", sha256 {encoder['sha256'][:12]}" if encoder['sha256'] else ''
      tuned = encoder.get('fine_tuned_blocks')
      lines.append(f"  encoder: {encoder['source']}{digest}, "
                   f"{'frozen' if encoder['frozen'] else 'trained'}"
                   + (f', top {tuned} blocks fine-tuned' if tuned else ''))
  if summary.get('hyperparameters'):
    lines.append('  tuned: ' + ', '.join(
        f'{k} {v:.3g}' for k, v in summary['hyperparameters'].items()))
  for name, value in sorted(summary['metrics'].items()):
    base = (summary['baseline_metrics'] or {}).get(name)
    lines.append(f'  {name:<16} {value:.4f}' +
                 (f'   (baseline {base:.4f})' if base is not None else ''))
  lines.append(f"  blessed: {'yes' if summary['blessed'] else 'no'}")
  lines.extend(f'    failed: {c}' for c in summary['failed_checks'])
  lines.append(f"  pushed model: {summary['pushed_model'] or 'none'}")
  if summary.get('report'):
    lines.append(f"  report: {summary['report']}")
  lines.extend(f'  warning: {w}' for w in summary.get('warnings', []))
  lines.append('  components: ' + ', '.join(
      f"{n} {c['seconds']:.1f}s{'' if c['state'] == 'COMPLETE' else ' ' + c['state'].lower()}"
      for n, c in summary['components'].items()))
  return '\n'.join(lines)
