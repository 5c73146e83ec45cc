"""Where the encoder's starting weights come from, for the Trainer and its lineage.

A weights file enters the pipeline as a Model artifact made by TFX's Importer
and reaches the Trainer as its `base_model` input, so ML Metadata links every
trained model to the weights it started from, and a changed file (another
sha256, a custom property of the import) is a new artifact: the Trainer's
cache key changes with it. 'imagenet' and 'none' need no file.
"""
import hashlib
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from components import features
from components.trainer.options import ENCODER_CHOICES

SHA256_PROPERTY = 'sha256'
# What TFX's FnArgs appends to a Model artifact's URI (new and old layouts).
_SERVING_SUBDIRS = ('Format-Serving', 'serving_model_dir')


def is_file_source(encoder_weights: str) -> bool:
  """True when the setting names a weights file (not imagenet/none)."""
  return encoder_weights not in ENCODER_CHOICES


def sha256(path: str) -> str:
  """The sha256 of a (local or remote) file, read through tf.io.gfile."""
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def weights_file(base_model: str) -> str:
  """The imported weights file from `fn_args.base_model`.

  TFX's FnArgs names a Model artifact's serving folder (`<uri>/Format-Serving`);
  an imported weights file has none, so the artifact's URI is the file.
  """
  head, tail = os.path.split(base_model)
  if tail in _SERVING_SUBDIRS and not tf.io.gfile.exists(base_model):
    return head
  return base_model


def keras_imagenet_file(image_size: int = features.IMAGE_SIZE) -> str:
  """Where Keras caches the no-top ImageNet MobileNetV2 weights it downloads.

  `keras_home()` is where `keras.utils.get_file` caches (KERAS_HOME as read
  when Keras was imported, or ~/.keras, or /tmp/.keras when that is read-only).
  """
  from keras.src.backend import config as keras_config  # pylint: disable=g-import-not-at-top
  return os.path.join(keras_config.keras_home(), 'models',
                      'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_'
                      f'{image_size}_no_top.h5')


def describe(source: str, train_encoder: bool, keras_file: Optional[str] = None,
             fine_tuned_blocks: int = 0) -> Dict[str, Any]:
  """The encoder's provenance for the model report and run_summary.json.

  Args:
    source: the weights file, or 'imagenet' / 'none'.
    train_encoder: whether the whole encoder trained.
    keras_file: for 'imagenet', the file Keras loaded (its cache), if known.
    fine_tuned_blocks: top encoder blocks trained in the fine-tuning phase.
  """
  path = source if is_file_source(source) else (
      keras_file if source == 'imagenet' else None)
  digest = sha256(path) if path and tf.io.gfile.exists(path) else None
  return {'source': source, 'sha256': digest, 'frozen': not train_encoder,
          'fine_tuned_blocks': fine_tuned_blocks}
