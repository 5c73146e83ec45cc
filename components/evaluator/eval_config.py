"""The TFMA EvalConfig: IoU metrics and the blessing thresholds."""
import json
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma

from components import evaluator
from components import features
from components.evaluator import options
from components.trainer import export



EXAMPLE_COUNT = 'example_count'


def metric_configs() -> Dict[str, tuple]:
  """Metric name -> (class name, config): mean IoU, IoU per class, pixel accuracy."""
  common = {'num_classes': features.NUM_CLASSES, 'sparse_y_pred': False}
  per_class = [('PixelIoU', dict(common, target_class_ids=[class_id]))
               for class_id in range(features.NUM_CLASSES)]
  configs = ([('PixelMeanIoU', dict(common))] + per_class +
             [('PixelAccuracy', {})])
  return dict(zip(features.METRIC_NAMES, configs))


def _threshold(lower_bound, max_regression) -> tfma.MetricThreshold:
  threshold = tfma.MetricThreshold()
  if lower_bound is not None:
    threshold.value_threshold.lower_bound.value = lower_bound
  if max_regression is not None:
    # Compared with the baseline (TFMA drops this when there is none yet).
    threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
    threshold.change_threshold.absolute.value = -max_regression
  return threshold


def slicing_specs() -> List[tfma.SlicingSpec]:
  """Overall, then one slice per value of each slice feature (species, breed)."""
  return [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[column])
                                 for column in features.SLICE_FEATURES]


def create_eval_config(
    lower_bounds: Dict[str, float], max_regression: Dict[str, float],
    slice_lower_bounds: Optional[Dict[str, Dict[str, float]]] = None,
) -> tfma.EvalConfig:
  """EvalConfig for the exported model on raw eval examples.

  Args:
    lower_bounds: metric name -> absolute lower bound for blessing.
    max_regression: metric name -> how far below the baseline it may fall.
    slice_lower_bounds: slice feature -> {metric name -> lower bound} that
      every slice of that feature must reach. Written against all slices of
      the feature; the Evaluator's executor (executor.py) narrows them to the
      slices large enough to gate once it has counted the eval examples.

  Returns:
    The EvalConfig; labels come from the model's `transform_features` signature,
    predictions from `serving_default`, so TFMA sees what serving sees.
  """
  slice_lower_bounds = slice_lower_bounds or {}
  problem = options.unknown_metrics(
      set(lower_bounds) | set(max_regression) |
      {m for bounds in slice_lower_bounds.values() for m in bounds})
  if problem:
    raise ValueError(problem)
  metrics = []
  for name, (class_name, config) in metric_configs().items():
    metric = tfma.MetricConfig(
        class_name=class_name, module=evaluator.METRICS_MODULE,
        config=json.dumps(dict(config, name=name)))
    if name in lower_bounds or name in max_regression:
      # On the overall slice only: TFMA applies a MetricConfig's plain
      # `threshold` to every slice, species and breeds included.
      metric.per_slice_thresholds.add(
          slicing_specs=[tfma.SlicingSpec()],
          threshold=_threshold(lower_bounds.get(name), max_regression.get(name)))
    for column, bounds in sorted(slice_lower_bounds.items()):
      if name in bounds:
        metric.per_slice_thresholds.add(
            slicing_specs=[tfma.SlicingSpec(feature_keys=[column])],
            threshold=_threshold(bounds[name], None))
    metrics.append(metric)
  # Examples per slice: the report and the gating of small slices show it.
  metrics.append(tfma.MetricConfig(class_name='ExampleCount',
                                   config=json.dumps({'name': EXAMPLE_COUNT})))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=export.SERVING_SIGNATURE,
          label_key=features.LABEL_KEY,
          prediction_key=features.PROBABILITIES_KEY,
          preprocessing_function_names=[export.TRANSFORM_SIGNATURE])],
      slicing_specs=slicing_specs(),
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)])
