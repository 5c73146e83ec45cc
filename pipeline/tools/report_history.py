"""The history of a pipeline in its ML Metadata store: one row per run.

A run is a `pipeline_run` context; TFX makes each a child of the pipeline's
`pipeline` context, so the pipeline's runs are that context's children, found
from any one run id (no pipeline name needed, and other pipelines sharing a
MySQL store stay out). Each run is read with `runs.read_run`, so cached
Evaluator and Pusher executions count with the artifacts they link to.
"""
import dataclasses
from typing import List, Optional

from components import features
from pipeline import pipeline as pipeline_lib
from pipeline import runs
from pipeline.tools import summary

RUN_CONTEXT, PIPELINE_CONTEXT = 'pipeline_run', 'pipeline'
MAX_RUNS = 200  # newest runs shown: each costs a few queries and a file read


@dataclasses.dataclass
class RunRecord:
  """One run of the pipeline, as the report's history shows it.

  Attributes:
    run_id: the pipeline_run context's name.
    started: when the run's context was created, ms since the epoch.
    mean_iou: the candidate's overall eval mean IoU; None without evaluation.
    blessed: the Evaluator's verdict; None when it did not run.
    pushed_version: the Pusher's version when it pushed, else None.
  """
  run_id: str
  started: int
  mean_iou: Optional[float]
  blessed: Optional[bool]
  pushed_version: Optional[str]


def overall_metric(evaluation_uri: str, name: str) -> Optional[float]:
  """The candidate's value of metric `name` on the overall slice, or None."""
  by_slice = summary.tfma_metrics(evaluation_uri).get('candidate', {})
  return summary.overall(by_slice).get(name)


def run_record(store, context) -> RunRecord:
  """The RunRecord of one `pipeline_run` context."""
  run = runs.read_run(store, context.name)
  evaluation = run.output(pipeline_lib.EVALUATOR, 'evaluation')
  blessing = run.output(pipeline_lib.EVALUATOR, 'blessing')
  pushed = run.output(pipeline_lib.PUSHER, 'pushed_model')
  version = None
  if pushed is not None and runs.custom_property(pushed, 'pushed'):
    version = str(runs.custom_property(pushed, 'pushed_version'))
  return RunRecord(
      run_id=context.name, started=context.create_time_since_epoch,
      mean_iou=(overall_metric(evaluation.uri, features.MEAN_IOU)
                if evaluation is not None else None),
      blessed=(bool(runs.custom_property(blessing, 'blessed'))
               if blessing is not None else None),
      pushed_version=version)


def pipeline_history(store, run_id: str, max_runs: int = MAX_RUNS) -> List[RunRecord]:
  """The runs of the pipeline that ran `run_id`, oldest first (newest `max_runs`).

  Raises:
    ValueError: the store has no run `run_id`.
  """
  this_run = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
  if this_run is None:
    raise ValueError(f'no run {run_id!r} in the metadata store')
  contexts = [this_run]
  for parent in store.get_parent_contexts_by_context(this_run.id):
    if parent.type == PIPELINE_CONTEXT:
      contexts = [c for c in store.get_children_contexts_by_context(parent.id)
                  if c.type == RUN_CONTEXT]
  contexts.sort(key=lambda c: (c.create_time_since_epoch, c.id))
  return [run_record(store, c) for c in contexts[-max_runs:]]
