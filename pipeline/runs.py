"""One way to read a pipeline run from ML Metadata.

A run is TFX's `pipeline_run` context (its name is the run id); each execution
in it belongs to a `node` context named `<pipeline>.<node id>`. `read_run`
returns, per node id (the constants in pipeline/pipeline.py), the execution's
state, duration and input/output artifacts by key, using MLMD's own queries.
The summary, the report, the tests and the benchmarks all read runs here.
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

from ml_metadata import errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT,
                  metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT,)


@dataclasses.dataclass
class NodeRun:
  """One node's execution in a run."""
  state: str  # 'COMPLETE', 'CACHED', 'FAILED', 'RUNNING', ...
  seconds: float
  inputs: Dict[str, List[metadata_store_pb2.Artifact]]
  outputs: Dict[str, List[metadata_store_pb2.Artifact]]
  execution: metadata_store_pb2.Execution


@dataclasses.dataclass
class Run:
  """A pipeline run: its id and its nodes' executions, in execution order."""
  run_id: str
  nodes: Dict[str, NodeRun]

  def output(self, node: str, key: str) -> Optional[metadata_store_pb2.Artifact]:
    """The first artifact `key` that `node` produced in this run, or None."""
    artifacts = self.nodes[node].outputs.get(key, []) if node in self.nodes else []
    return artifacts[0] if artifacts else None


def open_store(connection_config) -> metadata_store.MetadataStore:
  """The ML Metadata store of a `ConnectionConfig` (config.metadata_connection_config())."""
  return metadata_store.MetadataStore(connection_config)


def latest_run_id(store, pipeline_name: str) -> str:
  """The id of the run that holds the newest execution of the pipeline."""
  pipeline = store.get_context_by_type_and_name('pipeline', pipeline_name)
  executions = store.get_executions_by_context(pipeline.id) if pipeline else []
  if not executions:
    raise ValueError(f'no run of pipeline {pipeline_name} in the metadata store')
  newest = max(executions, key=lambda e: e.id)
  return next(c.name for c in store.get_contexts_by_execution(newest.id)
              if c.type == 'pipeline_run')


def _by_key(events, artifacts, types) -> Dict[str, List[metadata_store_pb2.Artifact]]:
  result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
  for event in events:
    if event.type in types:
      result.setdefault(event.path.steps[0].key, []).append(
          artifacts[event.artifact_id])
  return result


def execution_artifacts(store, execution_id: int) -> Tuple[
    Dict[str, List[metadata_store_pb2.Artifact]],
    Dict[str, List[metadata_store_pb2.Artifact]]]:
  """(inputs, outputs) of one execution, each {key: artifacts}."""
  events = store.get_events_by_execution_ids([execution_id])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(
      [e.artifact_id for e in events])}
  return (_by_key(events, artifacts, _INPUT_EVENTS),
          _by_key(events, artifacts, _OUTPUT_EVENTS))


def producer(store, artifact_id: int) -> Optional[metadata_store_pb2.Execution]:
  """The execution that made an artifact, or None (e.g. an imported one's
  importer was never recorded).

  A cached execution records the artifacts it reuses as its outputs too, so
  the producer is the first execution that output it, not the newest.
  """
  ids = sorted(e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
               if e.type in _OUTPUT_EVENTS)
  return store.get_executions_by_id(ids[:1])[0] if ids else None


def run_id_of(store, execution_id: int) -> Optional[str]:
  """The id of the run (`pipeline_run` context) an execution belongs to, or
  None (an execution recorded outside a TFX run)."""
  try:
    contexts = store.get_contexts_by_execution(execution_id)
  except errors.NotFoundError:  # MLMD's answer for "no contexts"
    return None
  return next((c.name for c in contexts if c.type == 'pipeline_run'), None)


def read_run(store, run_id: str) -> Run:
  """Every node execution of run `run_id`.

  Raises:
    ValueError: the store has no run of that id.
  """
  run = store.get_context_by_type_and_name('pipeline_run', run_id)
  if run is None:
    raise ValueError(f'no run {run_id!r} in the metadata store')
  nodes = {}
  executions = sorted(store.get_executions_by_context(run.id),
                      key=lambda e: (e.create_time_since_epoch, e.id))
  for execution in executions:
    node = next(c.name.split('.', 1)[1]
                for c in store.get_contexts_by_execution(execution.id)
                if c.type == 'node')
    inputs, outputs = execution_artifacts(store, execution.id)
    nodes[node] = NodeRun(
        state=state_name(execution),
        seconds=(execution.last_update_time_since_epoch -
                 execution.create_time_since_epoch) / 1000.0,
        inputs=inputs, outputs=outputs, execution=execution)
  return Run(run_id=run_id, nodes=nodes)


def state_name(execution) -> str:
  """'COMPLETE', 'CACHED', 'FAILED', 'RUNNING', ..."""
  return _STATES.get(execution.last_known_state, 'UNKNOWN')


def custom_property(artifact, name: str):
  """An artifact's int or string custom property, or None."""
  value = artifact.custom_properties.get(name)
  if value is None:
    return None
  return value.int_value if value.HasField('int_value') else value.string_value
