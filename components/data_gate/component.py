"""DataValidationGate: stops the pipeline before Transform when the data has
anomalies or has drifted from the last span trained on.

ExampleValidator and the DriftValidator (drift.py) only record what they find;
nothing downstream reads it. This small component does, and fails with the
findings as its reason, so that Transform, Trainer, Evaluator and Pusher never
run on data that breaks the curated schema in `schemas/` or that has shifted
away from what the model was built for. With `allow_drift` a drift is only
logged (the run summary lists it from the DriftValidator's artifact).
Transform is made to depend on it (`add_upstream_node`), so the examples
themselves need not pass through it.
"""
import os
from typing import Any, Dict, List

from absl import logging
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

SCHEMA_DIFF_FILE = 'SchemaDiff.pb'  # what both validators write per split
SPLIT_FOLDER = 'Split-'             # ExampleValidator: one folder per split
SPLIT_PAIR_FOLDER = 'SplitPair-'    # DistributionValidator: per split pair
_NOT_COMPARED = (anomalies_pb2.AnomalyInfo.STATS_NOT_AVAILABLE,
                 anomalies_pb2.AnomalyInfo.COMPARATOR_CONTROL_DATA_MISSING)


class DataAnomaliesError(ValueError):
  """The data broke the schema; str() lists every anomaly."""


class DataDriftError(ValueError):
  """The span drifted from the last span trained on; str() names the features."""


def describe_anomalies(anomalies_uri: str, splits: List[str],
                       folder: str = SPLIT_FOLDER) -> List[str]:
  """One line per anomaly: '<split>: <feature>: <short description>'."""
  lines = []
  for split in splits:
    path = os.path.join(anomalies_uri, f'{folder}{split}', SCHEMA_DIFF_FILE)
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, 'rb') as f:
      anomalies.ParseFromString(f.read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      lines.append(f'{split}: {feature}: {info.short_description or info.description}')
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      lines.append(f'{split}: (dataset): {info.short_description or info.description}')
  return lines


def read_drift(drift_uri: str, split_pairs: List[str]) -> Dict[str, Any]:
  """The DistributionValidator's findings: {'drifted': ['<feature>: <why>'],
  'divergence': {feature: measured Jensen-Shannon divergence},
  'not_compared': [feature]}; all empty for a first span (no baseline).

  A feature the baseline has no statistics for (a span ingested before the
  descriptor existed) is not compared, not drifted: this span's own features
  are required by the schema, which ExampleValidator checks.
  """
  drifted, divergence, not_compared = [], {}, []
  for split_pair in split_pairs:
    path = os.path.join(drift_uri, f'{SPLIT_PAIR_FOLDER}{split_pair}', SCHEMA_DIFF_FILE)
    if not tf.io.gfile.exists(path):
      continue
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, 'rb') as f:
      anomalies.ParseFromString(f.read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      reasons = [r for r in info.reason if r.type not in _NOT_COMPARED]
      if not reasons and info.reason:
        not_compared.append(feature)
        continue
      why = '; '.join(r.description for r in reasons) or info.description
      drifted.append(f'{feature}: {why}')
    for skew in anomalies.drift_skew_info:
      for measurement in skew.drift_measurements:
        divergence['.'.join(skew.path.step)] = round(measurement.value, 4)
  return {'drifted': drifted, 'divergence': divergence,
          'not_compared': not_compared}


@tfx.dsl.components.component
def DataValidationGate(  # pylint: disable=invalid-name
    anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies],
    drift: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies] = None,
    allow_drift: tfx.dsl.components.Parameter[int] = 0) -> None:
  """Raises DataAnomaliesError for schema anomalies, DataDriftError for drift
  (unless `allow_drift`)."""
  splits = artifact_utils.decode_split_names(anomalies.split_names)
  problems = describe_anomalies(anomalies.uri, splits)
  if problems:
    raise DataAnomaliesError(
        f'data validation failed ({len(problems)} anomalies against '
        f'schemas/schema.pbtxt): ' + '; '.join(problems))
  drifted = read_drift(drift.uri, artifact_utils.decode_split_names(
      drift.split_names))['drifted'] if drift is not None else []
  if drifted and not allow_drift:
    raise DataDriftError(
        f'data drift against the last span trained on ({len(drifted)} '
        f'feature(s); --allow-drift trains anyway): ' + '; '.join(drifted))
  for line in drifted:
    logging.warning('Drift allowed: %s', line)
