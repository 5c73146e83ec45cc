"""The Evaluator's settings: blessing thresholds."""
import dataclasses
from typing import Dict, Optional

from components import features
from components.options import at_least, setting, within

EVALUATION = 'evaluation (blessing)'


def unknown_metrics(names) -> Optional[str]:
  """Why some metric names are not ones the Evaluator computes, or None."""
  unknown = sorted(set(names) - set(features.METRIC_NAMES))
  if unknown:
    return f'unknown metric(s) {unknown}; known: {list(features.METRIC_NAMES)}'
  return None


def _metric_bounds(value: Dict[str, float]) -> Optional[str]:
  return unknown_metrics(value) or within(0.0, 1.0)(value)


def split_slice_key(key: str):
  """'species:mean_iou' -> ('species', 'mean_iou')."""
  column, _, metric = key.partition(':')
  return column, metric


def _slice_bounds(value: Dict[str, float]) -> Optional[str]:
  for key in value:
    column, metric = split_slice_key(key)
    if column not in features.SLICE_FEATURES or not metric:
      return (f'bad slice threshold {key!r}: expected SLICE:METRIC with SLICE '
              f'one of {list(features.SLICE_FEATURES)}')
  return (unknown_metrics(split_slice_key(k)[1] for k in value) or
          within(0.0, 1.0)(value))


@dataclasses.dataclass
class EvaluatorOptions:
  """Lower bounds and no-regression tolerances that gate blessing."""
  min_mean_iou: float = setting(
      0.0, 'absolute lower bound on eval mean IoU for blessing', EVALUATION,
      check=within(0.0, 1.0))
  thresholds: Dict[str, float] = setting(
      {}, 'another absolute lower bound: iou_pet, iou_background, iou_border, '
      'pixel_accuracy (repeatable)', EVALUATION, flag='--threshold',
      item='METRIC=MIN', check=_metric_bounds)
  max_regression: float = setting(
      0.0, 'how far mean IoU may fall below the last blessed model '
      '(0 = not worse)', EVALUATION, check=within(0.0, 1.0))
  max_regressions: Dict[str, float] = setting(
      {}, 'a no-regression check on another metric, e.g. iou_pet=0.02 '
      '(repeatable)', EVALUATION, flag='--max-regression-for',
      item='METRIC=MAX', check=_metric_bounds)

  slice_thresholds: Dict[str, float] = setting(
      {}, 'a lower bound every slice of a kind must reach, e.g. '
      'species:mean_iou=0.6 or breed:iou_pet=0.5 (repeatable)', EVALUATION,
      flag='--slice-threshold', item='SLICE:METRIC=MIN', check=_slice_bounds)
  min_slice_size: int = setting(
      10, 'slices with fewer eval images are reported but not gated',
      EVALUATION, metavar='N', check=at_least(1))

  def slice_lower_bounds(self) -> Dict[str, Dict[str, float]]:
    """{slice feature: {metric: lower bound}} from `slice_thresholds`."""
    bounds: Dict[str, Dict[str, float]] = {}
    for key, value in self.slice_thresholds.items():
      column, metric = split_slice_key(key)
      bounds.setdefault(column, {})[metric] = value
    return bounds

  def lower_bounds(self) -> Dict[str, float]:
    """Absolute lower bounds per metric, mean IoU included."""
    return {features.MEAN_IOU: self.min_mean_iou, **self.thresholds}

  def all_max_regressions(self) -> Dict[str, float]:
    """No-regression tolerances per metric, mean IoU included."""
    return {features.MEAN_IOU: self.max_regression, **self.max_regressions}
