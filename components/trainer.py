"""Trainer: `run_fn` fits the U-Net on transformed examples and exports serving signatures.

The exported SavedModel (a tf.Module holding the Keras 3 model and the TFT
layer) has:
  serving_default     serialized raw tf.Examples -> probabilities, class_mask
  transform_features  serialized raw tf.Examples -> transformed features (incl.
                      the label), which TFMA uses as its preprocessing function.
"""
import json
import os
from typing import Any, Dict

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

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


class _ServingModule(tf.Module):
  """Holds the Keras 3 model and the (tf_keras) TFT layer for export."""

  def __init__(self, model: keras.Model, tf_transform_output):
    super().__init__()
    self.model = model
    self.tft_layer = tf_transform_output.transform_features_layer()
    self._raw_spec = tf_transform_output.raw_feature_spec()
    # Serving is fed no label: parse everything but the mask.
    self._serving_spec = {k: v for k, v in self._raw_spec.items()
                          if k != features.MASK_KEY}

  def predict_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Scaled [B,128,128,3] images -> per-pixel probabilities and class ids."""
    probabilities = tf.nn.softmax(self.model(images, training=False), axis=-1)
    return {features.PROBABILITIES_KEY: probabilities,
            features.CLASS_MASK_KEY: tf.argmax(probabilities, axis=-1)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(self, serialized):
    parsed = tf.io.parse_example(serialized, self._serving_spec)
    transformed = self.tft_layer(parsed)
    return self.predict_images(transformed[features.IMAGE_XF_KEY])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(self, serialized):
    return self.tft_layer(tf.io.parse_example(serialized, self._raw_spec))


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
  module = _ServingModule(model, tf_transform_output)
  tf.saved_model.save(module, fn_args.serving_model_dir, signatures={
      'serving_default': module.serve_examples,
      'transform_features': module.transform_features,
  })
