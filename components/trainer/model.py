"""U-Net for pet segmentation: the TensorFlow segmentation tutorial's model in Keras 3.

Uses `import keras` (Keras 3) on purpose: once tensorflow_transform is imported,
`tf.keras` means tf_keras (Keras 2).
"""

import os

import keras
import numpy as np

from components import features

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


def _imagenet_weights_path(image_size: int) -> str:
    """Returns the cached no-top ImageNet file, or raises: there is no network to fetch it."""
    home = os.environ.get('KERAS_HOME') or os.path.join(os.path.expanduser('~'), '.keras')
    name = f'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{image_size}_no_top.h5'
    path = os.path.join(home, 'models', name)
    if not os.path.isfile(path):
        raise ValueError(f'ImageNet weights not in the Keras cache (looked for {path}); '
                         'use --encoder-weights PATH or --encoder-weights none.')
    return path


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
               num_classes: int = features.NUM_CLASSES) -> keras.Model:
    """Builds the MobileNetV2-encoder U-Net.

    Args:
      encoder_weights: 'imagenet' (only from the local Keras cache), 'none' (random
        init) or a path to a MobileNetV2 no-top weights file.
      train_encoder: whether the encoder's weights are trained.
      image_size: input height and width; images are float32 scaled to [-1, 1].
      num_classes: number of output logits per pixel.

    Returns:
      A keras.Model mapping 'image' [S, S, 3] to logits [S, S, num_classes].

    Raises:
      ValueError: weights unavailable, or a frozen random encoder.
    """
    if encoder_weights == 'none' and not train_encoder:
        raise ValueError('train_encoder=False with encoder_weights=none: a frozen randomly '
                         'initialised encoder learns nothing; use --train-encoder or give '
                         'weights (--encoder-weights PATH or imagenet).')
    if encoder_weights == 'none':
        weights = None
    elif encoder_weights == 'imagenet':
        weights = _imagenet_weights_path(image_size)
    elif os.path.isfile(encoder_weights):
        weights = encoder_weights
    else:
        raise ValueError(f'Encoder weights file not found: {encoder_weights!r} '
                         "(expected a MobileNetV2 no-top weights file, 'imagenet' or 'none').")

    base = keras.applications.MobileNetV2(
        input_shape=[image_size, image_size, 3], include_top=False, weights=weights)
    encoder = keras.Model(inputs=base.input,
                          outputs=[base.get_layer(n).output for n in SKIP_LAYER_NAMES],
                          name='encoder')
    if train_encoder:
        for layer in encoder.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = ENCODER_BN_MOMENTUM  # read at call time, so this takes effect
    else:
        encoder.trainable = False

    inputs = keras.Input(shape=[image_size, image_size, 3], dtype='float32',
                         name=features.IMAGE_KEY)
    skips = encoder(inputs)
    x = skips[-1]
    for i, (filters, skip) in enumerate(zip(DECODER_FILTERS, reversed(skips[:-1])), start=1):
        x = _upsample(filters, f'upsample_{i}')(x)
        x = keras.layers.Concatenate(name=f'concat_{i}')([x, skip])
    logits = keras.layers.Conv2DTranspose(
        num_classes, 3, strides=2, padding='same', name='final')(x)  # no softmax: logits
    return keras.Model(inputs=inputs, outputs=logits, name='unet')


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
