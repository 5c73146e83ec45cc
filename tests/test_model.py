"""Tests for components.model: U-Net structure, parameter counts, weight loading, errors."""

import keras
import numpy as np
import pytest

from components.trainer import model as unet_lib

# The tutorial's model: 6,504,227 params. Checked by hand: upsample_k = 3*3*C_in*F + 4F
# (conv without bias + BN), final = 3*3*160*3 + 3; the encoder is MobileNetV2 no-top
# (2,257,984) minus Conv_1, Conv_1_bn and block_16_project_BN = 1,841,984.
TOTAL_PARAMS = 6_504_227
DECODER_TRAINABLE = 1_475_584 + 2_507_264 + 516_352 + 156_800 + 4_323  # 4,660,323
ENCODER_PARAMS = 1_841_984


def _blocks(report):
  return {b['name']: b for b in report['blocks']}


def _history(tensor):
  """(layer name, output index) that produced a symbolic tensor."""
  h = tensor._keras_history
  return h.operation.name, h.tensor_index


@pytest.fixture(scope='module')
def trainable_unet():
  keras.backend.clear_session()
  return unet_lib.build_unet(encoder_weights='none', train_encoder=True)


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  keras.backend.clear_session()
  source = keras.applications.MobileNetV2(
    input_shape=[128, 128, 3], include_top=False, weights=None)
  path = tmp_path_factory.mktemp('weights') / 'enc.weights.h5'
  source.save_weights(str(path))
  return path, {l.name: l.get_weights() for l in source.layers}


@pytest.fixture(scope='module')
def frozen_unet(weights_file):
  keras.backend.clear_session()
  return unet_lib.build_unet(encoder_weights=str(weights_file[0]), train_encoder=False)


def test_output_shape_is_logits_per_pixel(trainable_unet):
  batch = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3)).astype('uint8')
  out = trainable_unet(batch, training=False)
  assert tuple(out.shape) == (2, 128, 128, 3)
  assert [t.name for t in trainable_unet.inputs] == ['image']
  # 8-bit pixels in; the first layer scales them as MobileNetV2 expects.
  assert trainable_unet.inputs[0].dtype == 'uint8'
  scale = trainable_unet.get_layer('scale_pixels')
  np.testing.assert_allclose(scale(np.array([0, 51, 255], np.uint8)),
                             [-1.0, 51 / 127.5 - 1.0, 1.0], atol=1e-6)
  # Logits, not probabilities: softmax would make each pixel sum to 1.
  assert not np.allclose(np.sum(np.asarray(out), axis=-1), 1.0)


def test_skips_are_encoder_outputs_wired_to_concats(trainable_unet):
  encoder = trainable_unet.get_layer('encoder')
  assert [_history(t)[0] for t in encoder.outputs] == list(unet_lib.SKIP_LAYER_NAMES)
  assert [b['name'] for b in unet_lib.parameter_report(trainable_unet)['blocks']] == [
    'scale_pixels', 'encoder', 'upsample_1', 'concat_1', 'upsample_2', 'concat_2', 'upsample_3',
    'concat_3', 'upsample_4', 'concat_4', 'final']
  # block_16_project (encoder output 4) feeds the decoder.
  up1_in = trainable_unet.get_layer('upsample_1')._inbound_nodes[0].input_tensors
  assert [_history(t) for t in up1_in] == [('encoder', 4)]
  # concat_k joins upsample_k with the skip of matching size: outputs 3, 2, 1, 0.
  for k in range(1, 5):
    ins = trainable_unet.get_layer(f'concat_{k}')._inbound_nodes[0].input_tensors
    assert [_history(t) for t in ins] == [(f'upsample_{k}', 0), ('encoder', 4 - k)]
  final_in = trainable_unet.get_layer('final')._inbound_nodes[0].input_tensors
  assert [_history(t) for t in final_in] == [('concat_4', 0)]


def test_trainable_encoder_counts(trainable_unet):
  report = unet_lib.parameter_report(trainable_unet)
  totals = report['totals']
  assert totals['total_params'] == trainable_unet.count_params() == TOTAL_PARAMS
  assert totals['trainable_params'] + totals['frozen_params'] == totals['total_params']
  assert sum(b['trainable_params'] + b['frozen_params'] for b in report['blocks']) \
    == TOTAL_PARAMS
  assert _blocks(report)['encoder']['trainable_params'] > 0
  # Frozen params are exactly the BatchNorm moving statistics, nothing else.
  moving = [w for w in trainable_unet.non_trainable_weights
              if w.path.endswith(('moving_mean', 'moving_variance'))]
  assert len(moving) == len(trainable_unet.non_trainable_weights)
  assert totals['frozen_params'] == sum(int(np.prod(w.shape)) for w in moving) == 32_832
  assert totals['trainable_params'] == 6_471_395
  assert 'total' in unet_lib.format_report(report)


def test_trainable_encoder_bn_momentum(trainable_unet):
  encoder = trainable_unet.get_layer('encoder')
  bns = [l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert bns and all(l.momentum == 0.9 for l in bns)
  assert encoder.trainable


def test_frozen_encoder_trains_decoder_only(frozen_unet):
  report = unet_lib.parameter_report(frozen_unet)
  blocks = _blocks(report)
  decoder = sum(blocks[n]['trainable_params']
                  for n in ('upsample_1', 'upsample_2', 'upsample_3', 'upsample_4', 'final'))
  assert blocks['encoder']['trainable_params'] == 0
  assert blocks['encoder']['frozen_params'] == ENCODER_PARAMS
  assert report['totals']['trainable_params'] == decoder == DECODER_TRAINABLE
  assert report['totals']['total_params'] == TOTAL_PARAMS


def test_frozen_encoder_loads_file_weights(frozen_unet, weights_file):
  source_weights = weights_file[1]
  encoder = frozen_unet.get_layer('encoder')
  compared = 0
  for layer in encoder.layers:
    for got, want in zip(layer.get_weights(), source_weights[layer.name], strict=True):
      np.testing.assert_array_equal(got, want)
      compared += 1
  assert compared == len(encoder.weights) > 0


def test_none_and_frozen_raises():
  with pytest.raises(ValueError, match='frozen randomly initialised encoder learns nothing'):
    unet_lib.build_unet(encoder_weights='none', train_encoder=False)


def test_missing_weights_path_raises(tmp_path):
  missing = tmp_path / 'nope.weights.h5'
  with pytest.raises(ValueError, match='not found'):
    unet_lib.build_unet(encoder_weights=str(missing))
