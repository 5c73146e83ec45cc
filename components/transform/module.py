"""Transform: decode, resize and scale; the serving path calls the same helpers.

`preprocessing_fn` runs in TFT (Beam) over the raw examples and its graph is
applied again inside the exported model, so training and serving share one
code path. `decode_image` is also used by the raw-bytes serving signature.
"""
from typing import Dict

import tensorflow as tf

from components import features

_SIZE = [features.IMAGE_SIZE, features.IMAGE_SIZE]


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded JPEG/PNG bytes -> float32 [128, 128, 3] in [-1, 1].

  Bilinear resize (as the tutorial), then MobileNetV2's scaling x / 127.5 - 1
  (what `keras.applications.mobilenet_v2.preprocess_input` computes).
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.image.resize(image, _SIZE, method='bilinear')
  return image / 127.5 - 1.0


def decode_mask(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded trimap PNG (1=pet 2=background 3=border) -> int64 [128, 128, 1] ids 0/1/2.

  Nearest-neighbour only: interpolating labels would invent classes between
  neighbouring ids (e.g. 1.5 at a pet/background edge).
  """
  mask = tf.io.decode_png(encoded, channels=1)
  mask = tf.image.resize(mask, _SIZE, method='nearest')
  return tf.cast(mask, tf.int64) - 1


def _flat(x: tf.Tensor) -> tf.Tensor:
  # Raw bytes arrive as [batch, 1]; map_fn wants one element per row.
  return tf.reshape(x, [-1])


def preprocessing_fn(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """tf.Transform callback: raw features -> model inputs and labels.

  The image and the mask are decoded in separate map_fns so that the serving
  graph, which is fed no mask, prunes the mask branch.
  """
  return {
      features.IMAGE_XF_KEY: tf.map_fn(
          decode_image, _flat(inputs[features.IMAGE_KEY]),
          fn_output_signature=tf.TensorSpec(_SIZE + [3], tf.float32)),
      features.MASK_XF_KEY: tf.map_fn(
          decode_mask, _flat(inputs[features.MASK_KEY]),
          fn_output_signature=tf.TensorSpec(_SIZE + [1], tf.int64)),
  }
