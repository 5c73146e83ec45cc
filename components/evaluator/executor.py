"""TFX's Evaluator, with per-slice thresholds only where a slice is large enough.

TFMA checks a per-slice threshold on every slice its spec matches, however few
examples a slice holds: one breed with two eval images could then block every
push. TFMA's own `min_slice_size` option drops small slices from the results
altogether, and they must stay reported. So before TFX's executor runs, this
one counts the eval examples per slice value and rewrites each per-slice
threshold written against a whole feature (`SlicingSpec(feature_keys=[f])`)
into one spec per value with at least `min_slice_size` examples
(`feature_values={f: v}`). TFMA then computes and gates as usual.
"""
import collections
import os
from typing import Dict

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import component as evaluator_component
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, proto_utils

from components import features

MIN_SLICE_SIZE_PROPERTY = 'min_slice_size'
_BATCH = 256


def _value_text(value) -> str:
  return value.decode(errors='replace') if isinstance(value, bytes) else str(value)


def count_slices(split_dir: str) -> Dict[str, collections.Counter]:
  """{slice feature: Counter(value as text -> examples)} of one split folder."""
  spec = {features.SPECIES_KEY: tf.io.FixedLenFeature([], tf.int64),
          features.BREED_KEY: tf.io.FixedLenFeature([], tf.string)}
  files = tf.io.gfile.glob(os.path.join(split_dir, '*'))
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(
      _BATCH).map(lambda batch: tf.io.parse_example(batch, spec))
  counts = {column: collections.Counter() for column in features.SLICE_FEATURES}
  for batch in dataset.as_numpy_iterator():
    for column in features.SLICE_FEATURES:
      counts[column].update(_value_text(v) for v in batch[column])
  return counts


def gate_large_slices(eval_config: tfma.EvalConfig,
                      counts: Dict[str, collections.Counter],
                      min_slice_size: int) -> tfma.EvalConfig:
  """A copy of `eval_config` whose feature-wide per-slice thresholds apply
  only to slice values with at least `min_slice_size` examples."""
  config = tfma.EvalConfig()
  config.CopyFrom(eval_config)
  for metrics_spec in config.metrics_specs:
    for metric in metrics_spec.metrics:
      kept = []
      for per_slice in metric.per_slice_thresholds:
        specs = []
        for spec in per_slice.slicing_specs:
          if len(spec.feature_keys) != 1 or spec.feature_values:
            specs.append(spec)
            continue
          column = spec.feature_keys[0]
          specs.extend(tfma.SlicingSpec(feature_values={column: value})
                       for value, n in sorted(counts.get(column, {}).items())
                       if n >= min_slice_size)
        if specs:
          del per_slice.slicing_specs[:]
          per_slice.slicing_specs.extend(specs)
          kept.append(per_slice)
      del metric.per_slice_thresholds[:]
      metric.per_slice_thresholds.extend(kept)
  return config


class Executor(evaluator_executor.Executor):
  """Counts eval examples per slice, narrows the per-slice thresholds, evaluates."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    exec_properties = dict(exec_properties)
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.EVAL_CONFIG_KEY], eval_config)
    splits = json_utils.loads(exec_properties.get(
        standard_component_specs.EXAMPLE_SPLITS_KEY) or 'null') or ['eval']
    examples = input_dict[standard_component_specs.EXAMPLES_KEY]
    counts = {column: collections.Counter() for column in features.SLICE_FEATURES}
    for split in splits:
      for split_dir in artifact_utils.get_split_uris(examples, split):
        for column, counter in count_slices(split_dir).items():
          counts[column].update(counter)
    narrowed = gate_large_slices(
        eval_config, counts, int(exec_properties.get(MIN_SLICE_SIZE_PROPERTY, 1)))
    exec_properties[standard_component_specs.EVAL_CONFIG_KEY] = (
        proto_utils.proto_to_json(narrowed))
    super().Do(input_dict, output_dict, exec_properties)


class SliceGatedEvaluator(evaluator_component.Evaluator):
  """TFX's Evaluator component running `Executor`; set `min_slice_size` with
  `with_min_slice_size`."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def with_min_slice_size(self, min_slice_size: int) -> 'SliceGatedEvaluator':
    self.exec_properties[MIN_SLICE_SIZE_PROPERTY] = min_slice_size
    return self
