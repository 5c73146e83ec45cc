"""Drift between spans: TFX's DistributionValidator against the last span trained on.

Why DistributionValidator and not ExampleValidator's drift comparators: the
comparators need the previous span's statistics (TFDV's
`previous_statistics`), and TFX 1.16's ExampleValidator takes only this span's
statistics and the schema, so it never compares two spans. DistributionValidator
takes both, writes its findings as a standard ExampleAnomalies artifact and
rubber-stamps a first span that has no baseline; its config names a
Jensen-Shannon divergence threshold per feature (`drift_config`).

Two small additions: the baseline is optional (TFX declares it required, so
the first run of a pipeline would fail to resolve its inputs), and the baseline
is the statistics of the newest span a completed Trainer actually learned from
(`LatestTrainedStatisticsStrategy`), not merely the previous run's: a span
stopped for drift must not become the reference the next span is judged by.
"""
from typing import Dict, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.components.distribution_validator import component as dv_component
from tfx.proto import distribution_validator_pb2
from tfx.types import component_spec, standard_artifacts, standard_component_specs
from tfx.utils import json_utils


# Drift is judged on the training split: the data the next model learns from
# (the eval split of a small span is too few images for a stable histogram).
SPLIT_PAIRS = [('train', 'train')]
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
_OUTPUT = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def drift_config(thresholds: Dict[str, float]
                 ) -> distribution_validator_pb2.DistributionValidatorConfig:
  """One Jensen-Shannon divergence threshold per feature (0 = identical
  distributions, 1 = disjoint)."""
  config = distribution_validator_pb2.DistributionValidatorConfig()
  for name, threshold in sorted(thresholds.items()):
    feature = config.default_slice_config.feature.add()
    feature.path.step.append(name)
    feature.distribution_comparator.jensen_shannon_divergence.threshold = threshold
  return config


class _DriftValidatorSpec(standard_component_specs.DistributionValidatorSpec):
  INPUTS = dict(
      standard_component_specs.DistributionValidatorSpec.INPUTS,
      **{standard_component_specs.BASELINE_STATISTICS_KEY:
         component_spec.ChannelParameter(
             type=standard_artifacts.ExampleStatistics, optional=True)})


class DriftValidator(dv_component.DistributionValidator):
  """TFX's DistributionValidator (same executor) with an optional baseline."""

  SPEC_CLASS = _DriftValidatorSpec

  def __init__(self, statistics: types.BaseChannel,
               baseline_statistics: types.BaseChannel,
               config: distribution_validator_pb2.DistributionValidatorConfig,
               include_split_pairs: Optional[List] = None):
    keys = standard_component_specs
    # BaseComponent's constructor, skipping DistributionValidator's, which
    # builds the stock spec with a required baseline.
    super(dv_component.DistributionValidator, self).__init__(spec=_DriftValidatorSpec(**{
        keys.STATISTICS_KEY: statistics,
        keys.BASELINE_STATISTICS_KEY: baseline_statistics,
        keys.DISTRIBUTION_VALIDATOR_CONFIG_KEY: config,
        keys.INCLUDE_SPLIT_PAIRS_KEY: json_utils.dumps(include_split_pairs),
        keys.ANOMALIES_KEY: types.Channel(type=standard_artifacts.ExampleAnomalies),
    }))


def _linked(store, artifact_ids: List[int], event_types, key: Optional[str] = None
            ) -> Set[int]:
  """Executions that link `artifact_ids` with `event_types` (and input `key`)."""
  if not artifact_ids:
    return set()
  return {e.execution_id for e in store.get_events_by_artifact_ids(artifact_ids)
          if e.type in event_types and
          (key is None or e.path.steps[0].key == key)}


def _artifacts_of(store, execution_ids: Set[int], event_types,
                  key: Optional[str] = None) -> Set[int]:
  if not execution_ids:
    return set()
  return {e.artifact_id
          for e in store.get_events_by_execution_ids(list(execution_ids))
          if e.type in event_types and
          (key is None or e.path.steps[0].key == key)}


def _done(store, execution_ids: Set[int]) -> Set[int]:
  if not execution_ids:
    return set()
  return {e.id for e in store.get_executions_by_id(list(execution_ids))
          if e.last_known_state in _DONE}


class LatestTrainedStatisticsStrategy(tfx.dsl.experimental.ResolverStrategy):
  """The newest ExampleStatistics whose Examples a completed Trainer learned from.

  Lineage in ML Metadata: statistics <- StatisticsGen <- Examples -> Transform
  -> transformed Examples -> Trainer (complete or cached) -> Model. Resolves
  to nothing (a first span: no drift check) when no span was trained on yet.
  """

  def resolve_artifacts(self, store, input_dict):
    INPUT = (metadata_store_pb2.Event.INPUT,)  # pylint: disable=invalid-name
    for statistics in sorted(input_dict['statistics'], key=lambda a: a.id,
                             reverse=True):
      producers = _linked(store, [statistics.id], _OUTPUT)
      examples = _artifacts_of(store, producers, INPUT, 'examples')
      transforms = _done(store, _linked(store, list(examples), INPUT, 'examples'))
      transformed = _artifacts_of(store, transforms, _OUTPUT)
      trainers = _done(store, _linked(store, list(transformed), INPUT, 'examples'))
      if any(t for t in trainers if _artifacts_of(store, {t}, _OUTPUT, 'model')):
        return {'statistics': [statistics]}
    return {'statistics': []}
