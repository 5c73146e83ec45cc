"""The TFMA EvalConfig: IoU metrics and the blessing thresholds."""
import json
from typing import Dict

import tensorflow_model_analysis as tfma

from components import evaluator
from components import features
from components.evaluator import options
from components.trainer import export



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


def create_eval_config(lower_bounds: Dict[str, float],
                       max_regression: Dict[str, float]) -> tfma.EvalConfig:
  """EvalConfig for the exported model on raw eval examples.

  Args:
    lower_bounds: metric name -> absolute lower bound for blessing.
    max_regression: metric name -> how far below the baseline it may fall.

  Returns:
    The EvalConfig; labels come from the model's `transform_features` signature,
    predictions from `serving_default`, so TFMA sees what serving sees.
  """
  problem = options.unknown_metrics(set(lower_bounds) | set(max_regression))
  if problem:
    raise ValueError(problem)
  metrics = []
  for name, (class_name, config) in metric_configs().items():
    metric = tfma.MetricConfig(
        class_name=class_name, module=evaluator.METRICS_MODULE,
        config=json.dumps(dict(config, name=name)))
    if name in lower_bounds or name in max_regression:
      metric.threshold.CopyFrom(
          _threshold(lower_bounds.get(name), max_regression.get(name)))
    metrics.append(metric)
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=export.SERVING_SIGNATURE,
          label_key=features.LABEL_KEY,
          prediction_key=features.PROBABILITIES_KEY,
          preprocessing_function_names=[export.TRANSFORM_SIGNATURE])],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)])
