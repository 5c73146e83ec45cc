"""`pipeline.tools.predict` on images of any size: full-size masks and overlays
at bounded memory, the same masks as the serving signature's.

The model is a random-weight U-Net exported with the real `serving_image_bytes`
signature (`export.ServingModule.serve_image_bytes`); it needs no Transform
graph, so these tests need no pipeline run.
"""
import io
import pathlib
import struct
import subprocess
import sys
import time
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw, JpegImagePlugin

from components import features
from components.trainer import export
from components.trainer import model as model_lib
from pipeline.tools import predict

REPO = pathlib.Path(__file__).resolve().parents[1]
CLASS_IDS = {features.PET, features.BACKGROUND, features.BORDER}
MIN_AGREEMENT = 0.999  # share of pixels where predict's mask equals the signature's
HUGE_SIDE = 12000  # 144 Mpx: above Pillow's default decompression-bomb warning
PEAK_RSS_LIMIT_MB = 2048


class _ImageBytesOnly(export.ServingModule):
  """The exported module without its Transform layer: serve_image_bytes only.

  The other signatures need a Transform graph; hidden so that saving does not
  trace them.
  """
  serve_examples = None
  transform_features = None

  def __init__(self, model):  # pylint: disable=super-init-not-called
    tf.Module.__init__(self)
    self.model = model


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> str:
  """A SavedModel with the real serving_image_bytes signature, random weights."""
  path = str(tmp_path_factory.mktemp('model') / 'serving')
  keras.utils.set_random_seed(0)
  module = _ImageBytesOnly(model_lib.build_unet(encoder_weights='none',
                                                train_encoder=True))
  tf.saved_model.save(module, path, signatures={
      export.IMAGE_BYTES_SIGNATURE: module.serve_image_bytes})
  return path


@pytest.fixture(scope='module')
def segmenter(model_dir) -> predict.Segmenter:
  return predict.Segmenter.load(model_dir)


@pytest.fixture
def loaded_once(segmenter, monkeypatch) -> None:
  """predict.main reuses the module's loaded model (a load takes 10-20 s).

  Loading itself is exercised by the subprocess test below and test_serving.py.
  """
  monkeypatch.setattr(predict.Segmenter, 'load', lambda model_dir: segmenter)


def _skipped(stderr: str) -> dict:
  """{path: reason} from predict's 'predict: skipped PATH: REASON' lines."""
  lines = stderr.splitlines()
  prefix = 'predict: skipped '
  assert all(line.startswith(prefix) for line in lines), stderr
  return dict(line[len(prefix):].split(': ', 1) for line in lines)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _test_card(width: int, height: int) -> Image.Image:
  """A smooth RGB image with a blob: something for the model, cheap to make."""
  ramp = Image.linear_gradient('L')
  small = Image.merge('RGB', (ramp, ramp.rotate(90), ramp.rotate(45)))
  ImageDraw.Draw(small).ellipse((64, 80, 192, 200), fill=(200, 120, 40))
  return small.resize((width, height), Image.BILINEAR)


def _png_header(width: int, height: int) -> bytes:
  """A PNG that claims width x height: header valid, pixel data empty."""
  def chunk(tag: bytes, body: bytes) -> bytes:
    return (struct.pack('>I', len(body)) + tag + body +
            struct.pack('>I', zlib.crc32(tag + body)))
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
          chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


# --- The full-size mask: the signature's, computed in strips ------------------------

def _probabilities(seed: int, ties: bool) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if ties:  # few distinct values: exact ties between classes are common
    scores = rng.integers(0, 3, (128, 128, 3)).astype(np.float32)
  else:
    scores = rng.normal(size=(128, 128, 3)).astype(np.float32)
  return tf.nn.softmax(scores).numpy()


@pytest.mark.parametrize('height,width', [
    (128, 128), (500, 375), (375, 500), (1536, 1024), (37, 1000), (1000, 3),
    (129, 127), (64, 64), (100, 50), (1, 1)])
@pytest.mark.parametrize('ties', [False, True])
def test_upsampled_mask_matches_mask_at_size(height, width, ties, monkeypatch):
  probabilities = _probabilities(height * 7 + width, ties)
  size = tf.constant([height, width])
  expected = export.mask_at_size(tf.constant(probabilities), size, size).numpy()
  # Small strips too: strips must join without a seam.
  for strip_pixels in (predict.STRIP_PIXELS, 3 * width + 1, 1):
    monkeypatch.setattr(predict, 'STRIP_PIXELS', strip_pixels)
    mask = predict.upsampled_mask(probabilities, height, width)
    assert mask.dtype == np.uint8 and mask.shape == (height, width)
    assert np.mean(mask == expected) >= MIN_AGREEMENT, (strip_pixels, ties)


def test_tint_in_place_matches_overlay(monkeypatch):
  rng = np.random.default_rng(0)
  monkeypatch.setattr(predict, 'STRIP_PIXELS', 1000)
  for height, width in ((1, 1), (7, 5), (301, 199)):
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (height, width)).astype(np.uint8)
    image = Image.fromarray(pixels)
    predict.tint_in_place(image, mask)
    np.testing.assert_array_equal(np.asarray(image), predict.overlay(pixels, mask))


# --- What the model is sent ---------------------------------------------------------

def test_model_input_sends_small_rgb_images_unchanged(real_sample):
  path = real_sample / 'images' / 'Abyssinian_100.jpg'
  data, size = predict.model_input(str(path))
  assert data == path.read_bytes()
  with Image.open(path) as image:
    assert size == (image.height, image.width)


def test_model_input_converts_other_modes_to_rgb(tmp_path):
  # 16-bit grayscale mid-gray: scaled to 8 bits (128), not clipped to white.
  path = tmp_path / 'gray16.png'
  Image.fromarray(np.full((30, 40), 0x8080, np.uint16)).save(path)
  assert Image.open(path).mode.startswith('I;16')
  data, size = predict.model_input(str(path))
  sent = Image.open(io.BytesIO(data))
  assert size == (30, 40) and sent.mode == 'RGB' and sent.size == (40, 30)
  assert set(np.unique(np.asarray(sent)).tolist()) == {128}


def test_model_input_downscales_large_jpeg_at_decode(tmp_path, monkeypatch):
  path = tmp_path / 'large.jpg'
  _test_card(5000, 3000).save(path, quality=90)
  decoded_sizes = []
  original_draft = JpegImagePlugin.JpegImageFile.draft

  def draft(image, mode, size):
    result = original_draft(image, mode, size)
    decoded_sizes.append(image.size)
    return result

  monkeypatch.setattr(JpegImagePlugin.JpegImageFile, 'draft', draft)
  data, size = predict.model_input(str(path))
  assert size == (3000, 5000)  # the original's
  assert decoded_sizes == [(2500, 1500)]  # JPEG decoded at 1/2 scale
  sent = Image.open(io.BytesIO(data))
  assert sent.format == 'PNG' and sent.mode == 'RGB'
  side = predict.MODEL_INPUT_MAX_SIDE
  assert sent.size == (side, round(3000 * side / 5000))


# --- The command --------------------------------------------------------------------

@pytest.mark.usefixtures('loaded_once')
def test_predict_masks_match_the_signature_on_real_photos(model_dir, segmenter,
                                                          real_sample, tmp_path):
  # The largest sample photo (1536x1024), an RGBA PNG named .jpg, two usual ones.
  names = ['Abyssinian_106', 'Abyssinian_5', 'Bengal_100', 'american_bulldog_20']
  paths = [real_sample / 'images' / f'{name}.jpg' for name in names]
  out = tmp_path / 'out'
  assert predict.main([model_dir] + [str(p) for p in paths] +
                      ['--out', str(out), '--batch-size', '3']) == predict.EXIT_OK
  for path in paths:
    expected = segmenter.masks([path.read_bytes()])[0]  # one image, no padding
    mask = np.asarray(Image.open(out / f'{path.stem}_mask.png'))
    assert mask.shape == expected.shape, path.name
    assert np.mean(mask == expected) >= MIN_AGREEMENT, path.name
    with Image.open(path) as image:
      rgb = np.asarray(image.convert('RGB'))
    overlay = np.asarray(Image.open(out / f'{path.stem}_overlay.png'))
    np.testing.assert_array_equal(overlay, predict.overlay(rgb, mask), path.name)


@pytest.mark.usefixtures('loaded_once')
def test_predict_overlays_16_bit_grayscale_scaled_not_clipped(model_dir, tmp_path):
  path = tmp_path / 'gray16.png'
  Image.fromarray(np.full((48, 64), 0x8080, np.uint16)).save(path)
  out = tmp_path / 'out'
  assert predict.main([model_dir, str(path), '--out', str(out)]) == predict.EXIT_OK
  mask = np.asarray(Image.open(out / 'gray16_mask.png'))
  overlay = np.asarray(Image.open(out / 'gray16_overlay.png'))
  np.testing.assert_array_equal(
      overlay, predict.overlay(np.full((48, 64, 3), 128, np.uint8), mask))


def test_open_image_replaces_pillows_pixel_limit():
  # 182 Mpx: Pillow alone refuses it (above 2 x 89 Mpx); under MAX_PIXELS here.
  data = _png_header(14000, 13000)
  with pytest.raises(Image.DecompressionBombError):
    Image.open(io.BytesIO(data))
  pillow_limit = Image.MAX_IMAGE_PIXELS
  assert predict.open_image(data).size == (14000, 13000)
  assert Image.MAX_IMAGE_PIXELS == pillow_limit  # restored


@pytest.mark.usefixtures('loaded_once')
def test_predict_skips_images_above_max_pixels_with_their_size(model_dir, real_sample,
                                                               tmp_path, capsys):
  huge = tmp_path / 'huge.png'
  huge.write_bytes(_png_header(16000, 16000))  # never decoded: refused by its header
  photo = real_sample / 'images' / 'Bengal_100.jpg'
  out = tmp_path / 'out'
  assert predict.main([model_dir, str(huge), str(photo), '--out', str(out)]) == 0
  assert _skipped(capsys.readouterr().err) == {
      str(huge): 'too large: 16000x16000 = 256.0 Mpx, above the limit of 200 Mpx'}
  assert sorted(p.name for p in out.iterdir()) == ['Bengal_100_mask.png',
                                                   'Bengal_100_overlay.png']


# Runs predict and prints its own peak RSS (KiB): VmHWM, which a new process
# image starts afresh (getrusage's ru_maxrss would carry over the forking
# pytest process's peak).
_MEASURED = """
import re, sys
from pipeline.tools import predict
code = predict.main(sys.argv[1:])
with open('/proc/self/status') as f:
  print(re.search(r'VmHWM:\\s+(\\d+) kB', f.read()).group(1))
sys.exit(code)
"""


def test_predict_12000px_jpeg_peak_memory_below_2gb(model_dir, tmp_path, monkeypatch):
  jpeg = tmp_path / 'huge.jpg'
  _test_card(HUGE_SIDE, HUGE_SIDE).save(jpeg, quality=80)  # here, not in the measured run
  out = tmp_path / 'out'
  start = time.monotonic()
  result = subprocess.run(
      [sys.executable, '-c', _MEASURED, model_dir, str(jpeg), '--out', str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
  seconds = time.monotonic() - start
  assert result.returncode == predict.EXIT_OK, result.stderr
  assert not result.stderr.strip(), result.stderr  # no bomb warning, no skip
  peak_mb = int(result.stdout.split()[-1]) / 1024
  print(f'predict on a {HUGE_SIDE}x{HUGE_SIDE} JPEG: peak RSS {peak_mb:.0f} MB, '
        f'{seconds:.0f} s')
  assert peak_mb <= PEAK_RSS_LIMIT_MB, f'peak RSS {peak_mb:.0f} MB'

  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', None)  # the outputs are 144 Mpx
  with Image.open(out / 'huge_overlay.png') as overlay:
    assert overlay.mode == 'RGB' and overlay.size == (HUGE_SIDE, HUGE_SIDE)
  with Image.open(out / 'huge_mask.png') as mask_file:
    assert mask_file.mode == 'L' and mask_file.size == (HUGE_SIDE, HUGE_SIDE)
    counts = np.bincount(np.asarray(mask_file).ravel(), minlength=256)
  assert counts[len(CLASS_IDS):].sum() == 0  # class ids only: 0, 1, 2
