"""The Evaluator's baseline: the newest model that was actually pushed.

TFX's LatestBlessedModelStrategy picks the newest model the Evaluator blessed.
With infra validation between the Evaluator and the Pusher, a blessed model can
still be refused (it does not load, or it is too slow), and it would then
become the baseline: the next run without new data compares that same model
with itself, the Pusher sees a model that is its own baseline and never pushes
it, even once it serves. So the baseline is what serves: the model of the
newest PushedModel marked `pushed`, found by lineage in ML Metadata (Pusher
execution: input `model` -> output `pushed_model`).
"""
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

_INPUT, _OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT


class LatestPushedModelStrategy(tfx.dsl.experimental.ResolverStrategy):
  """Resolves {'model': [the newest pushed model], 'pushed_model': [its
  push]} (both empty before any push)."""

  def resolve_artifacts(self, store, input_dict):
    models = {m.id: m for m in input_dict['model']}
    pushes = {p.id: p for p in input_dict['pushed_model']
              if p.get_int_custom_property('pushed') == 1}
    if not pushes:
      return {'model': [], 'pushed_model': []}
    pusher_of = {e.execution_id: e.artifact_id
                 for e in store.get_events_by_artifact_ids(list(pushes))
                 if e.type == _OUTPUT}
    served = sorted((e.artifact_id, pusher_of[e.execution_id])
                    for e in store.get_events_by_execution_ids(list(pusher_of))
                    if e.type == _INPUT and e.path.steps[0].key == 'model'
                    and e.artifact_id in models)
    if not served:
      return {'model': [], 'pushed_model': []}
    model_id, push_id = served[-1]
    return {'model': [models[model_id]], 'pushed_model': [pushes[push_id]]}
