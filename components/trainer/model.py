"""U-Net for pet segmentation: the TensorFlow segmentation tutorial's model in Keras 3.

Uses `import keras` (Keras 3) on purpose: once tensorflow_transform is imported,
`tf.keras` means tf_keras (Keras 2).
"""

import contextlib
import http.client
import os
import socket
import urllib.error

import keras
import numpy as np

from components import features
from components.trainer import options

# MobileNetV2 activations used as U-Net skips, shallow to deep (tutorial's choice).
SKIP_LAYER_NAMES = (
    'block_1_expand_relu',   # 64x64
    'block_3_expand_relu',   # 32x32
    'block_6_expand_relu',   # 16x16
    'block_13_expand_relu',  # 8x8
    'block_16_project',      # 4x4, the bottleneck
)
DECODER_FILTERS = (512, 256, 128, 64)
# BatchNorm momentum for every layer that trains. Keras' defaults (0.999 in
# MobileNetV2, 0.99 in the decoder) leave the moving statistics near their initial
# values after the few hundred steps of a small run, so inference-mode predictions
# (what the Evaluator sees) stay all background while training accuracy rises
# (TFX116-FACTS.md). A training hyper-parameter, not an architecture change.
BN_MOMENTUM = 0.9
ENCODER_BN_MOMENTUM = BN_MOMENTUM
# Keras' download has no timeout of its own: behind a firewall that drops packets
# a connect would wait for the OS (~2 min). Per socket operation, so a slow but
# moving download still completes.
DOWNLOAD_SOCKET_TIMEOUT_S = 30
# What `make encoder-weights` writes: the offline alternative the error names.
OFFLINE_ENCODER_WEIGHTS = '.cache/encoders/mobilenet_v2_stanford_dogs_128_no_top.weights.h5'
# What urllib raises (or Keras re-raises from) when the download cannot happen.
_NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError,
                   socket.timeout, http.client.HTTPException)


class EncoderWeightsUnavailable(ValueError):
  """The ImageNet encoder weights are neither cached nor downloadable."""


def _is_download_failure(error: BaseException) -> bool:
  """Whether `error` comes from the network rather than from a bad weights file.

  `keras.utils.get_file` re-raises urllib's URLError as a bare Exception ("URL
  fetch failure on ..."), so the network error is found in the exception chain;
  a corrupt cached file (h5py's OSError) must not be mistaken for being offline.
  """
  while error is not None:
    if isinstance(error, _NETWORK_ERRORS):
      return True
    error = error.__cause__ or error.__context__
  return False


@contextlib.contextmanager
def _socket_timeout(seconds: float):
  """Sets the default socket timeout for the block (urllib reads it at connect)."""
  previous = socket.getdefaulttimeout()
  socket.setdefaulttimeout(seconds)
  try:
    yield
  finally:
    socket.setdefaulttimeout(previous)


def _imagenet_mobilenet_v2(image_size: int) -> keras.Model:
  """The no-top ImageNet MobileNetV2, from Keras' cache or downloaded into it.

  Keras looks for mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_<S>_no_top.h5
  in $KERAS_HOME/models (default ~/.keras/models; KERAS_HOME is read when keras
  is imported) and downloads it when missing, as the tutorial does.

  Raises:
    EncoderWeightsUnavailable: not cached and the download failed (offline).
  """
  try:
    with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
      return keras.applications.MobileNetV2(
          input_shape=[image_size, image_size, 3], include_top=False, weights='imagenet')
  except Exception as e:  # pylint: disable=broad-except  (Keras raises a bare Exception)
    if not _is_download_failure(e):
      raise
    reason = str(e).replace('\n', ' ')
    raise EncoderWeightsUnavailable(
        f'cannot download the ImageNet MobileNetV2 weights (no network?): {reason}; '
        f'use --encoder-weights PATH (e.g. `make encoder-weights` writes '
        f'{OFFLINE_ENCODER_WEIGHTS}) or --encoder-weights none') from e


def _mobilenet_v2(encoder_weights: str, image_size: int) -> keras.Model:
  """The no-top MobileNetV2 base with 'none', 'imagenet' or file weights.

  Raises:
    ValueError: the weights file does not exist, or ImageNet is unavailable.
  """
  if encoder_weights == 'imagenet':
    return _imagenet_mobilenet_v2(image_size)
  if encoder_weights == 'none':
    weights = None
  elif os.path.isfile(encoder_weights):
    weights = encoder_weights
  else:
    raise ValueError(f'Encoder weights file not found: {encoder_weights!r} '
                     "(expected a MobileNetV2 no-top weights file, 'imagenet' or 'none').")
  return keras.applications.MobileNetV2(
      input_shape=[image_size, image_size, 3], include_top=False, weights=weights)


def scale_pixels() -> keras.layers.Layer:
  """uint8 pixels -> float32 in [-1, 1]: MobileNetV2's x / 127.5 - 1 (what
  `keras.applications.mobilenet_v2.preprocess_input` computes), inside the
  model so that Transform, its cache and serving carry 1-byte pixels."""
  return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name='scale_pixels')


def _upsample(filters: int, name: str) -> keras.Sequential:
  """pix2pix upsample block: Conv2DTranspose -> BatchNorm -> ReLU, doubling H and W."""
  return keras.Sequential([
      keras.layers.Conv2DTranspose(
          filters, 3, strides=2, padding='same', use_bias=False,
          kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02)),
      keras.layers.BatchNormalization(momentum=BN_MOMENTUM),
      keras.layers.ReLU(),
  ], name=name)


def build_unet(encoder_weights: str = 'none', train_encoder: bool = True,
               image_size: int = features.IMAGE_SIZE,
               num_classes: int = features.NUM_CLASSES,
               pixel_dtype: str = 'uint8') -> keras.Model:
  """Builds the MobileNetV2-encoder U-Net.

  Args:
    encoder_weights: 'imagenet' (Keras' cache, downloaded into it when missing),
      'none' (random init) or a path to a MobileNetV2 no-top weights file.
    train_encoder: whether the encoder's weights are trained.
    image_size: input height and width; images are uint8 pixels (0..255),
      scaled to MobileNetV2's [-1, 1] by the model's first layer.
    num_classes: number of output logits per pixel.
    pixel_dtype: the input's dtype; 'float32' takes unrounded pixel values
      (0..255) with the same weights (tests compare the two).

  Returns:
    A keras.Model mapping 'image' [S, S, 3] to logits [S, S, num_classes].

  Raises:
    ValueError: weights unavailable (EncoderWeightsUnavailable for ImageNet
      offline), or a frozen random encoder.
  """
  problem = options.encoder_problem(encoder_weights, train_encoder)
  if problem:
    raise ValueError(problem)
  base = _mobilenet_v2(encoder_weights, image_size)
  encoder = keras.Model(inputs=base.input,
                        outputs=[base.get_layer(n).output for n in SKIP_LAYER_NAMES],
                        name='encoder')
  if train_encoder:
    for layer in encoder.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = ENCODER_BN_MOMENTUM  # read at call time, so this takes effect
  else:
    encoder.trainable = False

  inputs = keras.Input(shape=[image_size, image_size, 3], dtype=pixel_dtype,
                       name=features.IMAGE_KEY)
  skips = encoder(scale_pixels()(inputs))
  x = skips[-1]
  for i, (filters, skip) in enumerate(zip(DECODER_FILTERS, reversed(skips[:-1])), start=1):
    x = _upsample(filters, f'upsample_{i}')(x)
    x = keras.layers.Concatenate(name=f'concat_{i}')([x, skip])
  logits = keras.layers.Conv2DTranspose(
      num_classes, 3, strides=2, padding='same', name='final')(x)  # no softmax: logits
  return keras.Model(inputs=inputs, outputs=logits, name='unet')


def synchronize_batch_norm(model: keras.Model) -> int:
  """Makes every BatchNormalization layer use the global batch's statistics.

  Under a multi-replica strategy each replica would otherwise normalise with,
  and update its moving mean/variance from, its own slice of the batch: the
  replicas' moving statistics then drift apart (seen with two workers: equal
  trained weights, different BatchNorm statistics). Keras' `synchronized`
  all-reduces the batch moments instead. Returns the number of layers changed.
  """
  count = 0
  pending = list(model.layers)
  while pending:
    layer = pending.pop()
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.synchronized = True  # read at call time
      count += 1
    pending.extend(getattr(layer, 'layers', []))
  return count


def _block_number(layer_name: str) -> int:
  """MobileNetV2 block of a layer: 'block_13_expand' -> 13; stem layers -> 0."""
  parts = layer_name.split('_')
  return int(parts[1]) if parts[0] == 'block' and parts[1].isdigit() else 0


def unfreeze_top_blocks(model: keras.Model, num_blocks: int) -> int:
  """Makes the top `num_blocks` encoder blocks trainable (fine-tuning phase).

  BatchNormalization layers stay frozen, as Keras' transfer-learning guide
  advises: with small fine-tuning batches, updating their statistics would
  undo what the pretrained encoder learned. Recompile the model afterwards.

  Args:
    model: a model from `build_unet`.
    num_blocks: how many of the encoder's deepest blocks (16, 15, ...) to train.

  Returns:
    The number of encoder layers made trainable.
  """
  encoder = model.get_layer('encoder')
  encoder.trainable = True
  first = max(_block_number(name) for name in SKIP_LAYER_NAMES) - num_blocks + 1
  unfrozen = 0
  for layer in encoder.layers:
    trainable = (_block_number(layer.name) >= first and
                 not isinstance(layer, keras.layers.BatchNormalization))
    layer.trainable = trainable
    unfrozen += int(trainable and bool(layer.weights))
  return unfrozen


def _count(weights) -> int:
  return int(sum(np.prod(w.shape) for w in weights))


def parameter_report(model: keras.Model) -> dict:
  """Counts parameters per block, in model order, the way Keras does.

  'frozen_params' are Keras' non-trainable weights. That includes BatchNorm moving
  mean/variance, which are never trained by gradient even in a trainable block.

  Args:
    model: a model from `build_unet`.

  Returns:
    {'blocks': [{'name', 'output_shape', 'trainable_params', 'frozen_params'}, ...],
     'totals': {'trainable_params', 'frozen_params', 'total_params'}}. output_shape
    has no batch dim; for the multi-output encoder it is a list of shapes.
  """
  blocks = []
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    out = layer.output
    shape = ([list(o.shape[1:]) for o in out] if isinstance(out, (list, tuple))
             else list(out.shape[1:]))
    blocks.append({'name': layer.name, 'output_shape': shape,
                   'trainable_params': _count(layer.trainable_weights),
                   'frozen_params': _count(layer.non_trainable_weights)})
  trainable = _count(model.trainable_weights)
  frozen = _count(model.non_trainable_weights)
  return {'blocks': blocks, 'totals': {'trainable_params': trainable, 'frozen_params': frozen,
                                       'total_params': trainable + frozen}}


def format_report(report: dict) -> str:
  """Renders `parameter_report` output as a fixed-width text table."""
  def fmt_shape(shape):
    if shape and isinstance(shape[0], list):
      return ' | '.join(fmt_shape(s) for s in shape)
    return 'x'.join(str(d) for d in shape)

  lines = [f"{'block':<12}{'trainable':>12}{'frozen':>12}  output shape", '-' * 72]
  for b in report['blocks']:
    lines.append(f"{b['name']:<12}{b['trainable_params']:>12,}{b['frozen_params']:>12,}  "
                 f"{fmt_shape(b['output_shape'])}")
  t = report['totals']
  lines += ['-' * 72,
            f"{'total':<12}{t['trainable_params']:>12,}{t['frozen_params']:>12,}  "
            f"= {t['total_params']:,} params (frozen includes BatchNorm moving stats)"]
  return '\n'.join(lines)
