"""Reads one pipeline run back from ML Metadata and writes run_summary.json.

Everything here comes from the metadata store and the artifacts it points to,
so the summary is exactly what the orchestrator recorded (cached executions
included: they link to the artifacts of the run that produced them).
"""
import json
import os
from typing import Any, Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.trainer import module as trainer_lib
from components.example_gen import executor as example_gen_executor
from pipeline import settings as config_lib
from pipeline import pipeline as pipeline_lib

_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


def _latest_run(store, pipeline_name: str) -> metadata_store_pb2.Context:
  """The pipeline_run context of the newest execution of this pipeline."""
  pipeline = store.get_context_by_type_and_name('pipeline', pipeline_name)
  executions = store.get_executions_by_context(pipeline.id) if pipeline else []
  if not executions:
    raise ValueError(f'no run of pipeline {pipeline_name} in the metadata store')
  newest = max(executions, key=lambda e: e.id)
  return next(c for c in store.get_contexts_by_execution(newest.id)
              if c.type == 'pipeline_run')


def _by_key(events, artifacts, types) -> Dict[str, List[metadata_store_pb2.Artifact]]:
  """{event path key (e.g. 'examples'): [artifacts]} for events of the given types."""
  result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
  for event in events:
    if event.type in types:
      result.setdefault(event.path.steps[0].key, []).append(
          artifacts[event.artifact_id])
  return result


def read_run(store, pipeline_name: str,
             run_id: Optional[str] = None) -> Dict[str, Any]:
  """Per node id of a run (default the latest): state, seconds, inputs, outputs."""
  run = (store.get_context_by_type_and_name('pipeline_run', run_id) if run_id
         else _latest_run(store, pipeline_name))
  nodes = {}
  executions = sorted(store.get_executions_by_context(run.id),
                      key=lambda e: (e.create_time_since_epoch, e.id))
  for execution in executions:
    node = next(c.name.split('.', 1)[1]
                for c in store.get_contexts_by_execution(execution.id)
                if c.type == 'node')
    events = store.get_events_by_execution_ids([execution.id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(
        [e.artifact_id for e in events])}
    outputs = _by_key(events, artifacts, (metadata_store_pb2.Event.OUTPUT,
                                          metadata_store_pb2.Event.DECLARED_OUTPUT))
    inputs = _by_key(events, artifacts, (metadata_store_pb2.Event.INPUT,))
    nodes[node] = {
        'state': _STATES.get(execution.last_known_state, 'UNKNOWN'),
        'seconds': (execution.last_update_time_since_epoch -
                    execution.create_time_since_epoch) / 1000.0,
        'inputs': inputs,
        'outputs': outputs,
    }
  return {'run_id': run.name, 'nodes': nodes}


def _prop(artifact, name: str):
  value = artifact.custom_properties.get(name)
  if value is None:
    return None
  return value.int_value if value.HasField('int_value') else value.string_value


def _only(nodes, node: str, key: str) -> Optional[metadata_store_pb2.Artifact]:
  artifacts = nodes.get(node, {}).get('outputs', {}).get(key, [])
  return artifacts[0] if artifacts else None


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


def build_summary(config: config_lib.PipelineConfig, store,
                  error: Optional[str] = None) -> Dict[str, Any]:
  """The run summary dict (see README) for the latest run of the pipeline."""
  run = read_run(store, config.pipeline_name)
  nodes = run['nodes']
  summary: Dict[str, Any] = {
      'data_root': config.data_root, 'run_id': run['run_id'], 'error': error,
      'blessed': False,
      'metrics': {}, 'baseline_metrics': None, 'failed_checks': [],
      'pushed_model': None, 'examples': {}, 'examples_uri': None,
      'quarantine': None, 'model': None, 'report': None,
      'components': {n: {'state': v['state'], 'seconds': v['seconds']}
                     for n, v in nodes.items()},
  }
  examples = _only(nodes, pipeline_lib.EXAMPLE_GEN, 'examples')
  if examples is not None:
    counts = json.loads(_prop(examples, example_gen_executor.SPLIT_COUNTS_PROPERTY) or '{}')
    summary['examples'] = {split: c['examples'] for split, c in counts.items()}
    summary['examples']['rejected'] = _prop(
        examples, example_gen_executor.NUM_REJECTED_PROPERTY)
    summary['quarantine'] = _prop(
        examples, example_gen_executor.QUARANTINE_URI_PROPERTY)
    summary['examples']['span'] = _prop(examples, 'span')
    summary['examples_uri'] = examples.uri
  model = _only(nodes, pipeline_lib.TRAINER, 'model')
  if model is not None:
    report_path = os.path.join(model.uri, trainer_lib.REPORT_JSON)
    if tf.io.gfile.exists(report_path):
      with tf.io.gfile.GFile(report_path) as f:
        totals = json.load(f)['totals']
      summary['model'] = {'uri': model.uri,
                          'trainable_params': totals['trainable_params'],
                          'frozen_params': totals['frozen_params']}
  evaluation = _only(nodes, pipeline_lib.EVALUATOR, 'evaluation')
  if evaluation is not None:
    by_model = _metrics(evaluation.uri)
    summary['metrics'] = by_model.get('candidate', {})
    summary['baseline_metrics'] = by_model.get('baseline')
    summary['failed_checks'] = _failed_checks(evaluation.uri)
  blessing = _only(nodes, pipeline_lib.EVALUATOR, 'blessing')
  summary['blessed'] = bool(blessing is not None and _prop(blessing, 'blessed'))
  pushed = _only(nodes, pipeline_lib.PUSHER, 'pushed_model')
  if pushed is not None and _prop(pushed, 'pushed'):
    summary['pushed_model'] = _prop(pushed, 'pushed_destination')
  return summary


def write_summary(config: config_lib.PipelineConfig,
                  connection_config: metadata_store_pb2.ConnectionConfig,
                  error: Optional[str] = None) -> Dict[str, Any]:
  """Builds the summary of the latest run and writes it to config.summary_path."""
  summary = build_summary(config, metadata_store.MetadataStore(connection_config),
                          error)
  save_summary(config, summary)
  return summary


def save_summary(config: config_lib.PipelineConfig, summary: Dict[str, Any]) -> None:
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
  for name, value in sorted(summary['metrics'].items()):
    base = (summary['baseline_metrics'] or {}).get(name)
    lines.append(f'  {name:<16} {value:.4f}' +
                 (f'   (baseline {base:.4f})' if base is not None else ''))
  lines.append(f"  blessed: {'yes' if summary['blessed'] else 'no'}")
  lines.extend(f'    failed: {c}' for c in summary['failed_checks'])
  lines.append(f"  pushed model: {summary['pushed_model'] or 'none'}")
  if summary.get('report'):
    lines.append(f"  report: {summary['report']}")
  lines.append('  components: ' + ', '.join(
      f"{n} {c['seconds']:.1f}s{'' if c['state'] == 'COMPLETE' else ' ' + c['state'].lower()}"
      for n, c in summary['components'].items()))
  return '\n'.join(lines)
