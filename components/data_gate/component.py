"""DataValidationGate: stops the pipeline before Transform when the data has anomalies.

ExampleValidator only records anomalies; nothing downstream reads them. This
small component does, and fails with the anomalies as its reason, so that
Transform, Trainer, Evaluator and Pusher never run on data that breaks the
curated schema in `schemas/`. Transform is made to depend on it
(`add_upstream_node`), so the examples themselves need not pass through it.
"""
import os
from typing import List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

SCHEMA_DIFF_FILE = 'SchemaDiff.pb'  # what ExampleValidator writes per split


class DataAnomaliesError(ValueError):
  """The data broke the schema; str() lists every anomaly."""


def describe_anomalies(anomalies_uri: str, splits: List[str]) -> List[str]:
  """One line per anomaly: '<split>: <feature>: <short description>'."""
  lines = []
  for split in splits:
    path = os.path.join(anomalies_uri, f'Split-{split}', SCHEMA_DIFF_FILE)
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, 'rb') as f:
      anomalies.ParseFromString(f.read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      lines.append(f'{split}: {feature}: {info.short_description or info.description}')
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      lines.append(f'{split}: (dataset): {info.short_description or info.description}')
  return lines


@tfx.dsl.components.component
def DataValidationGate(  # pylint: disable=invalid-name
    anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
  """Raises DataAnomaliesError when ExampleValidator found any anomaly."""
  splits = artifact_utils.decode_split_names(anomalies.split_names)
  problems = describe_anomalies(anomalies.uri, splits)
  if problems:
    raise DataAnomaliesError(
        f'data validation failed ({len(problems)} anomalies against '
        f'schemas/schema.pbtxt): ' + '; '.join(problems))
