"""Export: the SavedModel the Evaluator, the Pusher and serving use.

A plain tf.Module holds the Keras 3 model and the (tf_keras) TFT layer; its
tf.function signatures save and load with `tf.saved_model.save` (Keras 3's own
`model.export` cannot carry the TFT layer). Signatures:
  serving_default      serialized raw tf.Examples -> probabilities, class_mask
  transform_features   serialized raw tf.Examples -> transformed features (incl.
                       the label): TFMA's preprocessing function.
  serving_image_bytes  encoded JPEG/PNG bytes of any size -> class_mask at each
                       image's own size (padded), height, width, and
                       probabilities at model resolution.

The image-bytes signature decodes with `components.transform.decode_image`,
the very function the Transform graph runs, so it cannot drift from training.
"""
import os
from typing import Dict

import keras
import tensorflow as tf

from components import features
from components.trainer import model as model_lib
from components.transform import module as transform

SERVING_SIGNATURE = 'serving_default'
TRANSFORM_SIGNATURE = 'transform_features'
IMAGE_BYTES_SIGNATURE = 'serving_image_bytes'
IMAGE_BYTES_KEY = 'image_bytes'  # the input name of serving_image_bytes
# serving_image_bytes returns every image's mask in one dense uint8 tensor
# [B, H_max, W_max]; pixels beyond an image's own height/width hold 255, the
# usual "void" label of segmentation masks. uint8, not int64 as at 128x128:
# full-size int64 masks are 8x the bytes, and made the signature ~1.5x slower.
MASK_PADDING = 255

_MODEL_IMAGE = tf.TensorSpec([features.IMAGE_SIZE, features.IMAGE_SIZE, 3], tf.uint8)


def image_size(encoded: tf.Tensor) -> tf.Tensor:
  """[height, width] (int32) of one encoded image.

  JPEG sizes come from the header alone; other formats (PNG, GIF, BMP) are
  decoded once more, as `decode_image` keeps no trace of the original size.
  """
  return tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.image.extract_jpeg_shape(encoded)[:2],
      lambda: tf.shape(tf.io.decode_image(
          encoded, channels=3, expand_animations=False))[:2])


def mask_at_size(probabilities: tf.Tensor, size: tf.Tensor,
                 padded_size: tf.Tensor) -> tf.Tensor:
  """[128,128,C] probabilities -> uint8 class ids at `size`, padded to `padded_size`.

  Resizes the probabilities bilinearly and takes the argmax there, rather than
  nearest-upsampling the 128x128 class ids: boundaries then fall between model
  pixels where the classes actually cross over, instead of a blocky staircase
  of 128-grid cells, at about the same cost (measured). At 128x128 the resize
  is the identity, so the mask equals the argmax of `probabilities`.
  """
  mask = argmax_uint8(tf.image.resize(probabilities, size, method='bilinear'))
  return tf.pad(mask, [[0, padded_size[0] - size[0]], [0, padded_size[1] - size[1]]],
                constant_values=MASK_PADDING)


def argmax_uint8(scores: tf.Tensor) -> tf.Tensor:
  """tf.argmax over the last (class) axis as uint8, ties to the lowest id alike.

  Element-wise compares instead of tf.argmax: its kernel is slow on a 3-wide
  last axis (measured: on full-size masks it cost as much as the resize).
  """
  classes = tf.unstack(scores, num=features.NUM_CLASSES, axis=-1)
  best, ids = classes[0], tf.zeros_like(classes[0], tf.uint8)
  for class_id, score in enumerate(classes[1:], start=1):
    ids = tf.where(score > best, tf.constant(class_id, tf.uint8), ids)
    best = tf.maximum(best, score)
  return ids


class ServingModule(tf.Module):
  """Holds the Keras 3 model and the (tf_keras) TFT layer for export."""

  def __init__(self, model: keras.Model, tf_transform_output):
    super().__init__()
    self.model = model
    self.tft_layer = tf_transform_output.transform_features_layer()
    # Parse only what the transform reads: a request then needs no more
    # than the image (serving) or the image and its mask (TFMA's labels),
    # whatever descriptive features the ExampleGen adds.
    raw_spec = tf_transform_output.raw_feature_spec()
    self._raw_spec = {k: raw_spec[k] for k in (features.IMAGE_KEY,
                                               features.MASK_KEY)}
    self._serving_spec = {features.IMAGE_KEY: raw_spec[features.IMAGE_KEY]}

  def predict_images(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """[B,128,128,3] pixels 0..255 -> per-pixel probabilities and class ids."""
    probabilities = tf.nn.softmax(
        self.model(tf.cast(images, tf.uint8), training=False), axis=-1)
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

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name=IMAGE_BYTES_KEY)])
  def serve_image_bytes(self, image_bytes):
    """Encoded images -> class_mask [B,H_max,W_max], height, width [B], probabilities."""
    images = tf.map_fn(transform.decode_image, image_bytes,
                       fn_output_signature=_MODEL_IMAGE)
    sizes = tf.map_fn(image_size, image_bytes,
                      fn_output_signature=tf.TensorSpec([2], tf.int32))
    probabilities = self.predict_images(images)[features.PROBABILITIES_KEY]
    padded_size = tf.reduce_max(sizes, axis=0)
    masks = tf.map_fn(lambda x: mask_at_size(x[0], x[1], padded_size),
                      (probabilities, sizes),
                      fn_output_signature=tf.TensorSpec([None, None], tf.uint8))
    return {features.CLASS_MASK_KEY: masks,
            features.HEIGHT_KEY: sizes[:, 0],
            features.WIDTH_KEY: sizes[:, 1],
            features.PROBABILITIES_KEY: probabilities}


def export_serving_model(model: keras.Model, tf_transform_output,
                         export_dir: str) -> None:
  """Saves `model` with the Transform graph and the serving signatures."""
  module = ServingModule(model, tf_transform_output)
  tf.saved_model.save(module, export_dir, signatures={
      SERVING_SIGNATURE: module.serve_examples,
      TRANSFORM_SIGNATURE: module.transform_features,
      IMAGE_BYTES_SIGNATURE: module.serve_image_bytes,
  })


def load_keras_model(export_dir: str) -> keras.Model:
  """The exported Keras model, rebuilt with `build_unet` and the exported weights.

  `tf.saved_model.load` gives back the signatures and the model's variables,
  not a callable Keras model; comparisons of serving against the bare model
  (tests, benchmarks) need the real thing, with exactly the served weights.
  """
  model = model_lib.build_unet()  # random init, overwritten below
  status = tf.train.Checkpoint(model=model).read(
      os.path.join(export_dir, 'variables', 'variables'))
  status.assert_existing_objects_matched().expect_partial()  # every weight restored
  return model
