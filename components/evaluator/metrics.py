"""Per-pixel segmentation metrics that work inside TFMA.

TFMA passes one weight per example (shape [batch]) while these metrics count
pixels ([batch, H, W]); the stock tf_keras IoU metrics then fail with
"Shapes (262144,) and (16,) are incompatible". Each class here broadcasts the
example weight to every pixel of its example and is otherwise the stock metric.
They are tf_keras metrics because TFMA 0.47 instantiates tf_keras classes.
"""
import tensorflow as tf
import tf_keras


def _per_pixel(y_true, sample_weight):
  """Broadcasts a [batch] example weight to y_true's pixels ([batch, H, W])."""
  if sample_weight is None:
    return None
  y_true = tf.convert_to_tensor(y_true)  # TFMA may pass numpy arrays.
  pixels = tf.shape(y_true)[:-1] if len(y_true.shape) == 4 else tf.shape(y_true)
  weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1, 1, 1])
  return tf.broadcast_to(weight, pixels)


class PixelMeanIoU(tf_keras.metrics.MeanIoU):
  """Mean IoU over all classes, counted per pixel."""

  def update_state(self, y_true, y_pred, sample_weight=None):
    return super().update_state(y_true, y_pred, _per_pixel(y_true, sample_weight))


class PixelIoU(tf_keras.metrics.IoU):
  """IoU of the `target_class_ids` (one class for a per-class IoU)."""

  def update_state(self, y_true, y_pred, sample_weight=None):
    return super().update_state(y_true, y_pred, _per_pixel(y_true, sample_weight))


class PixelAccuracy(tf_keras.metrics.SparseCategoricalAccuracy):
  """Fraction of pixels whose arg-max class equals the label."""

  def update_state(self, y_true, y_pred, sample_weight=None):
    return super().update_state(y_true, y_pred, _per_pixel(y_true, sample_weight))
