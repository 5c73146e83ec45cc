"""Trainer: `run_fn` fits the U-Net on transformed examples and exports it.

The export (signatures, see `components.export`) applies the Transform graph,
so serving and evaluation see exactly what training saw.
"""
import json
import os
from typing import Any, Dict

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import export
from components import features
from components import model as model_lib

REPORT_JSON = 'model_report.json'
REPORT_TEXT = 'model_report.txt'


def _dataset(fn_args: tfx.components.FnArgs, files, tf_transform_output,
             batch_size: int, training: bool, seed: int) -> tf.data.Dataset:
  """(image_xf, mask_xf) batches from the transformed examples, one pass."""
  dataset = fn_args.data_accessor.tf_dataset_factory(
      files,
      tfxio.TensorFlowDatasetOptions(
          batch_size=batch_size, label_key=features.LABEL_KEY, num_epochs=1,
          shuffle=training, shuffle_seed=seed),
      tf_transform_output.transformed_metadata.schema)
  dataset = dataset.map(lambda x, y: (x[features.IMAGE_XF_KEY], y))
  if training:
    dataset = dataset.map(_random_flip, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)


def _random_flip(image: tf.Tensor, mask: tf.Tensor):
  """Flips image and mask together, left-right, per example (training only)."""
  flip = tf.random.uniform([tf.shape(image)[0], 1, 1, 1]) < 0.5
  return (tf.where(flip, tf.reverse(image, axis=[2]), image),
          tf.where(flip, tf.reverse(mask, axis=[2]), mask))


def _write_report(model: keras.Model, model_dir: str) -> Dict[str, Any]:
  report = model_lib.parameter_report(model)
  tf.io.gfile.makedirs(model_dir)
  with tf.io.gfile.GFile(os.path.join(model_dir, REPORT_JSON), 'w') as f:
    json.dump(report, f, indent=2)
  with tf.io.gfile.GFile(os.path.join(model_dir, REPORT_TEXT), 'w') as f:
    f.write(model_lib.format_report(report))
  return report


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """TFX Trainer entry point (referenced as `components.trainer.run_fn`)."""
  config = fn_args.custom_config
  keras.utils.set_random_seed(config['seed'])
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  batch_size = config['batch_size']
  train = _dataset(fn_args, fn_args.train_files, tf_transform_output,
                   batch_size, training=True, seed=config['seed'])
  evaluation = _dataset(fn_args, fn_args.eval_files, tf_transform_output,
                        batch_size, training=False, seed=config['seed'])

  model = model_lib.build_unet(encoder_weights=config['encoder_weights'],
                               train_encoder=config['train_encoder'])
  model.compile(
      optimizer=keras.optimizers.Adam(config['learning_rate']),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=['accuracy'])
  model.fit(train, validation_data=evaluation, epochs=config['epochs'],
            callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)],
            verbose=2)

  # The report sits in the model artifact, beside (not inside) Format-Serving.
  _write_report(model, os.path.dirname(fn_args.serving_model_dir))
  export.export_serving_model(model, tf_transform_output,
                              fn_args.serving_model_dir)
