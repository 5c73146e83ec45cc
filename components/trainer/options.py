"""The Trainer's settings: what `run_fn` receives, rebuilt from its custom_config."""
import dataclasses
import os
from typing import Any, Dict, Optional

from components.options import at_least, setting, within

TRAINING = 'training'
ENCODER_CHOICES = ('imagenet', 'none')  # or a weights file


def encoder_problem(encoder_weights: str, train_encoder: bool) -> Optional[str]:
  """Why an encoder setting cannot train anything useful, or None.

  A frozen randomly initialised encoder gives the decoder random features that
  never improve; refused here once, by the CLI and by `build_unet` alike.
  """
  if encoder_weights == 'none' and not train_encoder:
    return ('--freeze-encoder with --encoder-weights none: a frozen randomly '
            'initialised encoder learns nothing; use --train-encoder or give '
            'weights (--encoder-weights PATH or imagenet)')
  return None


def _weights_check(value: str) -> Optional[str]:
  if value in ENCODER_CHOICES or os.path.isfile(value):
    return None
  return f'no such file {value} (expected imagenet, none or a weights file)'


@dataclasses.dataclass
class TrainerOptions:
  """Everything the Trainer's `run_fn` needs besides its input artifacts."""
  epochs: int = setting(10, 'training epochs', TRAINING, check=at_least(1))
  batch_size: int = setting(16, 'global batch size (split across replicas)',
                            TRAINING, check=at_least(1))
  learning_rate: float = setting(1e-3, 'Adam learning rate', TRAINING,
                                 check=within(0.0, 1.0))
  encoder_weights: str = setting(
      'imagenet', "MobileNetV2 encoder weights: 'imagenet' (Keras' download "
      "and cache, as the tutorial), 'none' (random init) or a no-top weights "
      'file (e.g. `make encoder-weights`)', TRAINING,
      metavar='{imagenet,none,PATH}', check=_weights_check)
  train_encoder: bool = setting(
      False, 'train the encoder too (--train-encoder), or only the decoder '
      '(--freeze-encoder, the tutorial\'s choice; needs pretrained weights)',
      TRAINING,
      off_flag='--freeze-encoder')
  fine_tune_blocks: int = setting(
      0, 'after --epochs, unfreeze the top K encoder blocks (BatchNorm stays '
      'frozen); 0 = no fine-tuning phase', TRAINING, metavar='K',
      check=within(0, 16))
  fine_tune_epochs: int = setting(0, 'epochs of the fine-tuning phase',
                                  TRAINING, check=at_least(0))
  fine_tune_learning_rate: float = setting(
      1e-4, 'learning rate of the fine-tuning phase', TRAINING,
      check=within(0.0, 1.0))
  early_stopping_patience: int = setting(
      5, 'stop after N epochs without a lower eval loss, keeping the best '
      'weights; 0 = off', TRAINING, metavar='N', check=at_least(0))
  cache_examples: bool = setting(
      True, 'keep the transformed examples in memory after the first epoch '
      '(64 KB an image: 8-bit pixels) instead of re-reading them every epoch',
      TRAINING)
  seed: int = setting(0, 'seed for shuffling and initialisation', TRAINING)
  tune_trials: int = setting(
      0, 'search the learning rate (and, with --fine-tune-epochs, the '
      'fine-tuning depth) with a TFX Tuner node over N trials on the train '
      'split; the Trainer takes the best (0 = no Tuner)', TRAINING,
      metavar='N', check=at_least(0))

  def cross_check(self) -> Optional[str]:
    return encoder_problem(self.encoder_weights, self.train_encoder)

  def to_custom_config(self) -> Dict[str, Any]:
    """Plain JSON-able values for the Trainer's custom_config."""
    return dataclasses.asdict(self)

  @classmethod
  def from_custom_config(cls, values: Dict[str, Any]) -> 'TrainerOptions':
    return cls(**values)
