"""The Tuner's search space: what it varies, and how the Trainer takes the result.

Kept apart from `tuner.py` (which imports KerasTuner) so the Trainer applies
the best hyperparameters without importing the search machinery.
"""
from typing import Any, Dict

LEARNING_RATE = 'learning_rate'
FINE_TUNE_BLOCKS = 'fine_tune_blocks'
TUNED = (LEARNING_RATE, FINE_TUNE_BLOCKS)


def chosen(hyperparameters_config: Dict[str, Any]) -> Dict[str, Any]:
  """TrainerOptions fields from the Tuner's best_hyperparameters (its config)."""
  values = hyperparameters_config.get('values', {})
  return {name: values[name] for name in TUNED if name in values}
