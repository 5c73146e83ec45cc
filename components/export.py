"""Export: the SavedModel the Evaluator, the Pusher and serving use.

A plain tf.Module holds the Keras 3 model and the (tf_keras) TFT layer; its
tf.function signatures save and load with `tf.saved_model.save` (Keras 3's own
`model.export` cannot carry the TFT layer). Signatures:
  serving_default     serialized raw tf.Examples -> probabilities, class_mask
  transform_features  serialized raw tf.Examples -> transformed features (incl.
                      the label): TFMA's preprocessing function.
"""
from typing import Dict

import keras
import tensorflow as tf

from components import features

SERVING_SIGNATURE = 'serving_default'
TRANSFORM_SIGNATURE = 'transform_features'


class ServingModule(tf.Module):
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


def export_serving_model(model: keras.Model, tf_transform_output,
                         export_dir: str) -> None:
  """Saves `model` with the Transform graph and the serving signatures."""
  module = ServingModule(model, tf_transform_output)
  tf.saved_model.save(module, export_dir, signatures={
      SERVING_SIGNATURE: module.serve_examples,
      TRANSFORM_SIGNATURE: module.transform_features,
  })
