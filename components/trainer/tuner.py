"""TFX Tuner: `tuner_fn` searches the learning rate and the fine-tuning depth.

Each trial trains exactly as the Trainer does (`module.fit`: phase 1, then the
optional fine-tuning phase) with the trial's hyperparameters, on four fifths
of the train split; the other fifth scores it (validation loss), so the eval
split that decides blessing is never used for the search. The Trainer then
takes the best hyperparameters (`tuning.chosen`), and the summary shows them.
"""
import dataclasses
from typing import Dict

import keras
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from components import trainer as trainer_room
from components.trainer import module
from components.trainer import tuning
from components.trainer.options import TrainerOptions

VALIDATION_EVERY = 5  # one train example in 5 scores the trials


def search_space(config: TrainerOptions) -> keras_tuner.HyperParameters:
  """Learning rate (log scale) and, when a fine-tuning phase runs, its depth."""
  hp = keras_tuner.HyperParameters()
  hp.Float(tuning.LEARNING_RATE, 1e-4, 1e-2, sampling='log',
           default=config.learning_rate)
  if config.fine_tune_epochs > 0 and not config.train_encoder:
    hp.Int(tuning.FINE_TUNE_BLOCKS, 0, 4, default=config.fine_tune_blocks)
  return hp


class SegmentationHyperModel(keras_tuner.HyperModel):
  """Builds and fits the U-Net as the Trainer does, with a trial's values."""

  def __init__(self, config: TrainerOptions, run_dir: str):
    super().__init__()
    self._config, self._run_dir = config, run_dir

  def _trial_config(self, hp: keras_tuner.HyperParameters) -> TrainerOptions:
    return dataclasses.replace(self._config,
                               **tuning.chosen(hp.get_config()))

  def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
    return module.new_model(self._trial_config(hp))

  def fit(self, hp, model, *args, **kwargs) -> Dict[str, float]:
    history = module.fit(self._trial_config(hp), model, kwargs['x'],
                         kwargs['validation_data'], self._run_dir,
                         tf.distribute.get_strategy(),
                         extra_callbacks=kwargs.get('callbacks', []))
    return {'val_loss': min(history.eval_losses())}


def split_train(dataset: tf.data.Dataset, batch_size: int):
  """(search train, search validation): every 5th example validates."""
  examples = dataset.unbatch().enumerate()
  pick = lambda keep: lambda i, x: tf.equal(i % VALIDATION_EVERY, 0) == keep
  drop_index = lambda i, x: x
  validation = examples.filter(pick(True)).map(drop_index).batch(batch_size)
  train = examples.filter(pick(False)).map(drop_index).batch(batch_size)
  return train.map(module.random_flip), validation


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  """TFX Tuner entry point: a KerasTuner random search over `search_space`."""
  config = module.options_for(fn_args)
  trials = fn_args.custom_config[trainer_room.TUNER_TRIALS_KEY]
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  examples = module.make_dataset(
      fn_args, fn_args.train_files, tf_transform_output, config.batch_size,
      training=False, seed=config.seed, cache=True)
  train, validation = split_train(examples, config.batch_size)
  tuner = keras_tuner.RandomSearch(
      hypermodel=SegmentationHyperModel(config, fn_args.working_dir),
      hyperparameters=search_space(config), objective='val_loss',
      max_trials=int(trials), seed=config.seed, directory=fn_args.working_dir,
      project_name='pet_segmentation', overwrite=True)
  return tfx.components.TunerFnResult(
      tuner=tuner, fit_kwargs={'x': train, 'validation_data': validation})
