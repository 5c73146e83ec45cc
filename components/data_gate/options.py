"""The data gate's settings: the drift check between spans."""
import dataclasses
from typing import Dict, Optional

from components import features
from components.options import setting

DRIFT = 'data validation (drift between spans)'
# Jensen-Shannon divergence of each descriptor's histogram, span vs the last
# span trained on. Measured on synthetic spans of 12 training images: two seeds
# of the same generator differ by 0.14-0.41 (few images make coarse
# histograms), near-black images by 1.0 in brightness. Larger spans differ far
# less by chance; lower these once a pipeline's spans are large.
DEFAULT_JSD = 0.5


def _known_features(value: Dict[str, float]) -> Optional[str]:
  unknown = sorted(set(value) - set(features.DRIFT_FEATURES))
  if unknown:
    return f'unknown drift feature(s) {unknown}; known: {list(features.DRIFT_FEATURES)}'
  if any(not 0.0 < v <= 1.0 for v in value.values()):
    return 'drift thresholds are Jensen-Shannon divergences in (0, 1]'
  return None


@dataclasses.dataclass
class DataGateOptions:
  """Whether and how strictly a span is compared with the last trained one."""
  drift_check: bool = setting(
      True, 'compare this span\'s descriptors (brightness, saturation, aspect '
      'ratio, size, pet/border fractions) with the last span trained on; a '
      'drifted span stops the run before Transform (exit 1)', DRIFT)
  allow_drift: bool = setting(
      False, 'record drift in run_summary.json and train anyway', DRIFT)
  drift_thresholds: Dict[str, float] = setting(
      {}, f'Jensen-Shannon divergence above which a descriptor has drifted '
      f'(default {DEFAULT_JSD} each), e.g. brightness=0.3 (repeatable)', DRIFT,
      flag='--drift-threshold', item='FEATURE=JSD', check=_known_features)

  def thresholds(self) -> Dict[str, float]:
    """Every descriptor's threshold, defaults filled in."""
    return {**{name: DEFAULT_JSD for name in features.DRIFT_FEATURES},
            **self.drift_thresholds}
