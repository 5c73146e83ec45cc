"""The infra validator's settings: whether it runs, on how much, and its limits."""
import dataclasses

from components.options import at_least, setting, within

INFRA = 'infra validation (before push)'


@dataclasses.dataclass
class InfraValidatorOptions:
  """How the model is served in a fresh process before the Pusher may push it."""
  infra_validation: bool = setting(
      True, 'serve the model in a fresh process on eval examples before '
      'pushing (--no-infra-validation skips the check)', INFRA)
  infra_examples: int = setting(
      8, 'eval examples sent to every signature, one request each', INFRA,
      metavar='N', check=within(1, 1000))
  # The 128x128 U-Net answers one request in ~45 ms (p50) on 2 cores, up to
  # ~130 ms while other jobs share them (measured): the budget catches a model
  # an order of magnitude slower, not the noise of a busy machine.
  infra_latency_budget_ms: float = setting(
      500.0, 'most a request may take (median per signature, ms)', INFRA,
      metavar='MS', check=within(1e-6, 1e6))
  infra_timeout_seconds: int = setting(
      300, 'give up on a probe that has not answered after S seconds '
      '(TensorFlow import and model load included)', INFRA, metavar='S',
      check=at_least(10))
