"""Per-example scalar descriptors that make spans of image data comparable.

StatisticsGen summarises them like any numeric feature, and the drift check
(TFX's DistributionValidator, see components/data_gate) compares their
distributions between spans: a camera change moves brightness or saturation,
a new labelling tool moves the border fraction, a batch of near-black images
moves brightness. Computed from a reduced decode (JPEG draft mode, ~1/8
scale) and the trimap already checked by `validation.validate_trimap`, so
they cost about a millisecond a pair. Pure NumPy and PIL: no TensorFlow (see
records.py for why).
"""
import io
import re
from typing import Dict

import numpy as np
from PIL import Image

from components import features

_THUMBNAIL = (32, 32)  # draft() decodes at the smallest scale (>= 1/8) that keeps this
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_NUMBERED = re.compile(r'(.+)_\d+')


def breed_name(file_name: str) -> str:
  """The breed of an official file name: 'great_pyrenees_12' -> 'great_pyrenees'.

  The dataset names every image '<Breed>_<number>' (cats capitalised, dogs
  lower case); any other name is its own breed.
  """
  match = _NUMBERED.fullmatch(file_name)
  return match.group(1) if match else file_name


def describe(jpeg: bytes, trimap_png: bytes, height: int, width: int
             ) -> Dict[str, float]:
  """The drift descriptors of one checked pair (features.DRIFT_FEATURES).

  Args:
    jpeg: the normalised RGB JPEG (validation.normalise_image).
    trimap_png: the checked one-channel trimap PNG (validation.validate_trimap).
    height: the image's height in pixels.
    width: the image's width in pixels.

  Returns:
    feature name -> value.
  """
  image = Image.open(io.BytesIO(jpeg))
  image.draft('RGB', _THUMBNAIL)
  rgb = np.asarray(image, np.float32).reshape(-1, 3) / 255.0
  brightest, darkest = rgb.max(axis=1), rgb.min(axis=1)
  # HSV saturation: (max - min) / max, 0 for black pixels.
  saturation = np.divide(brightest - darkest, brightest,
                         out=np.zeros_like(brightest), where=brightest > 0)
  trimap = np.asarray(Image.open(io.BytesIO(trimap_png)))
  pixels = float(trimap.size)
  return {
      # ITU-R BT.601 luma, as PIL's 'L' mode.
      features.BRIGHTNESS_KEY: float((rgb @ _LUMA).mean()),
      features.SATURATION_KEY: float(saturation.mean()),
      features.ASPECT_RATIO_KEY: width / height,
      features.MEGAPIXELS_KEY: width * height / 1e6,
      features.PET_FRACTION_KEY: np.count_nonzero(trimap == 1) / pixels,
      features.BORDER_FRACTION_KEY: np.count_nonzero(trimap == 3) / pixels,
  }
