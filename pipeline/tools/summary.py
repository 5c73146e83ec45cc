"""Reads one pipeline run back from ML Metadata and writes run_summary.json.

Everything here comes from the metadata store and the artifacts it points to,
so the summary is exactly what the orchestrator recorded (cached executions
included: they link to the artifacts of the run that produced them).
"""
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma

from tfx.types import artifact_utils

from components import features
from components.data_gate import component as data_gate
from components.infra_validator import component as infra_validator
from components.evaluator import eval_config
from components.evaluator.options import EvaluatorOptions
from components.example_gen import executor as example_gen_executor
from components.trainer import module as trainer_lib
from components.trainer import tuning
from pipeline import pipeline as pipeline_lib
from pipeline import runs
from pipeline import settings


MAX_LISTED_REJECTS = 100  # the quarantine files hold them all


def slice_name(slice_key) -> Optional[Tuple[str, str]]:
  """(feature, value name) of a one-feature TFMA slice key; None overall.

  Species ids become their names (1 -> 'cat'), as in the list files' header.
  """
  if not slice_key.single_slice_keys:
    return None
  key = slice_key.single_slice_keys[0]
  if key.HasField('bytes_value'):
    value = key.bytes_value.decode(errors='replace')
  else:
    value = str(key.int64_value if key.HasField('int64_value') else key.float_value)
  if key.column == features.SPECIES_KEY:
    value = features.SPECIES_NAMES.get(int(value), value)
  return key.column, value


def tfma_metrics(evaluation_uri: str) -> Dict[str, Dict[Any, Dict[str, float]]]:
  """{'candidate': {slice: {name: value}}, 'baseline': {...}} from TFMA's
  results; slice None is overall, else (feature, value name)."""
  by_model: Dict[str, Dict[Any, Dict[str, float]]] = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    where = slice_name(metrics.slice_key)
    for kv in metrics.metric_keys_and_values:
      if kv.key.is_diff or not kv.value.HasField('double_value'):
        continue
      model = kv.key.model_name or 'candidate'
      by_model.setdefault(model, {}).setdefault(where, {})[kv.key.name] = (
          kv.value.double_value.value)
  return by_model


def _failed_checks(evaluation_uri: str) -> List[str]:
  result = tfma.load_validation_result(evaluation_uri)
  failed = []
  for per_slice in result.metric_validations_per_slice:
    where = slice_name(per_slice.slice_key)
    prefix = f'{where[0]}={where[1]}: ' if where else ''
    failed.extend(
        f'{prefix}{f.metric_key.name}'
        f'{" (vs baseline)" if f.metric_key.is_diff else ""}: {f.message}'
        for f in per_slice.failures)
  return failed


def overall(by_slice: Dict[Any, Dict[str, float]]) -> Dict[str, float]:
  return {k: v for k, v in by_slice.get(None, {}).items()
          if k != eval_config.EXAMPLE_COUNT}


def metrics_by_slice(by_slice: Dict[Any, Dict[str, float]]
                     ) -> Dict[str, Dict[str, Dict[str, float]]]:
  """{feature: {value name: {metric: value, 'num_examples': n}}}."""
  result: Dict[str, Dict[str, Dict[str, float]]] = {
      column: {} for column in features.SLICE_FEATURES}
  for where, values in by_slice.items():
    if where is None:
      continue
    entry = {k: v for k, v in values.items() if k != eval_config.EXAMPLE_COUNT}
    entry['num_examples'] = int(values.get(eval_config.EXAMPLE_COUNT, 0))
    result.setdefault(where[0], {})[where[1]] = entry
  return result


def checks(evaluation: EvaluatorOptions, metrics: Dict[str, float],
           baseline: Optional[Dict[str, float]],
           by_slice: Dict[str, Dict[str, Dict[str, float]]]) -> List[Dict[str, Any]]:
  """Every blessing check with its threshold, value, baseline and outcome.

  TFMA decides blessing (its failures are `failed_checks`); this lists the
  same checks for people, including those that passed and the slices too
  small to gate (`gated` False: `passed` says how they compare, but they
  never stop blessing).
  """
  rows = []

  def add(metric, where, kind, threshold, value, base, passed, gated=True):
    rows.append({'metric': metric, 'slice': where, 'kind': kind,
                 'threshold': threshold, 'value': value, 'baseline': base,
                 'passed': bool(passed), 'gated': gated})

  for metric, bound in sorted(evaluation.lower_bounds().items()):
    value = metrics.get(metric)
    add(metric, None, 'lower_bound', bound, value, (baseline or {}).get(metric),
        value is not None and value >= bound)
  if baseline:
    for metric, tolerance in sorted(evaluation.all_max_regressions().items()):
      value, base = metrics.get(metric), baseline.get(metric)
      if value is not None and base is not None:
        add(metric, None, 'max_regression', tolerance, value, base,
            value - base >= -tolerance)
  for column, bounds in sorted(evaluation.slice_lower_bounds().items()):
    for name, values in sorted(by_slice.get(column, {}).items()):
      for metric, bound in sorted(bounds.items()):
        value = values.get(metric)
        add(metric, f'{column}:{name}', 'lower_bound', bound, value, None,
            value is not None and value >= bound,
            gated=values['num_examples'] >= evaluation.min_slice_size)
  return rows


def _infra_validation(run) -> Optional[Dict[str, Any]]:
  """The infra validator's verdict, reason and timings (None when it did not run)."""
  node = run.nodes.get(pipeline_lib.INFRA_VALIDATOR)
  blessing = next(iter(node.outputs.values()), [None])[0] if node else None
  if blessing is None:
    return None
  path = os.path.join(blessing.uri, infra_validator.MEASUREMENTS_FILE)
  measurements = None
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      measurements = json.load(f)
  return {'blessed': bool(runs.custom_property(blessing, 'blessed')),
          'reason': runs.custom_property(blessing, infra_validator.REASON_PROPERTY)
                    or None,
          'measurements': measurements}


def _span_of_statistics(store, statistics) -> Optional[int]:
  """The span of the Examples that StatisticsGen described in `statistics`."""
  made_by = runs.producer(store, statistics.id)
  examples = (runs.execution_artifacts(store, made_by.id)[0] if made_by else {}
              ).get('examples', [])
  return runs.custom_property(examples[0], 'span') if examples else None


def _drift(config: settings.PipelineConfig, store, run) -> Optional[Dict[str, Any]]:
  """What the DriftValidator compared and found (None when it did not run)."""
  anomalies = run.output(pipeline_lib.DRIFT_VALIDATOR, 'anomalies')
  if anomalies is None:
    return None
  found = data_gate.read_drift(anomalies.uri, artifact_utils.decode_split_names(
      anomalies.properties['split_names'].string_value))
  # ML Metadata keeps one input event per artifact: when a span is compared
  # with itself (it has been trained on since), its statistics are recorded
  # under one of the two keys only.
  inputs = run.nodes[pipeline_lib.DRIFT_VALIDATOR].inputs
  baseline = inputs.get('baseline_statistics') or (
      inputs.get('statistics', []) if found['divergence'] else [])
  return {'baseline_statistics': baseline[0].uri if baseline else None,
          'baseline_span': (_span_of_statistics(store, baseline[0])
                            if baseline else None),
          **found, 'allowed': config.validation.allow_drift}


def build_summary(config: settings.PipelineConfig, store, run_id: str,
                  error: Optional[str] = None) -> Dict[str, Any]:
  """The run summary dict (see README) of run `run_id`."""
  run = runs.read_run(store, run_id)
  summary: Dict[str, Any] = {
      'data_root': config.data_root, 'run_id': run.run_id, 'error': error,
      'blessed': False,
      'metrics': {}, 'baseline_metrics': None, 'failed_checks': [],
      'metrics_by_slice': {}, 'checks': [], 'drift': None,
      'infra_validation': None,
      'pushed_model': None, 'examples': {}, 'examples_uri': None,
      'quarantine': None, 'model': None, 'report': None, 'model_card': None,
      'warnings': [],
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
  summary['drift'] = _drift(config, store, run)
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
    by_model = tfma_metrics(evaluation.uri)
    candidate = by_model.get('candidate', {})
    summary['metrics'] = overall(candidate)
    summary['baseline_metrics'] = (overall(by_model['baseline'])
                                   if 'baseline' in by_model else None)
    summary['metrics_by_slice'] = metrics_by_slice(candidate)
    summary['failed_checks'] = _failed_checks(evaluation.uri)
    summary['checks'] = checks(config.evaluation, summary['metrics'],
                               summary['baseline_metrics'],
                               summary['metrics_by_slice'])
  summary['infra_validation'] = _infra_validation(run)
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
  drift = summary.get('drift') or {}
  if drift.get('drifted'):
    lines.append(f"  drift vs span {drift['baseline_span']} "
                 f"({'allowed' if drift['allowed'] else 'stopped the run'}):")
    lines.extend(f'    {d}' for d in drift['drifted'])
  lines.append(f"  blessed: {'yes' if summary['blessed'] else 'no'}")
  lines.extend(f'    failed: {c}' for c in summary['failed_checks'])
  infra = summary.get('infra_validation')
  if infra and infra['reason'] != infra_validator.NOT_BLESSED_BY_EVALUATOR:
    lines.append('  infra validation: ' + ('passed' if infra['blessed'] else
                                           f"failed: {infra['reason']}"))
  lines.append(f"  pushed model: {summary['pushed_model'] or 'none'}")
  if summary.get('report'):
    lines.append(f"  report: {summary['report']}")
  lines.extend(f'  warning: {w}' for w in summary.get('warnings', []))
  lines.append('  components: ' + ', '.join(
      f"{n} {c['seconds']:.1f}s{'' if c['state'] == 'COMPLETE' else ' ' + c['state'].lower()}"
      for n, c in summary['components'].items()))
  return '\n'.join(lines)
