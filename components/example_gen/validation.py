"""Pure helpers that validate one image/trimap pair and normalise it for storage.

Used by the ExampleGen's Beam DoFn and by the ingestion benchmark's plain loop, so
both do exactly the same work. Every rejection is a `BadInput` with a reason a
person can act on; nothing here raises anything else for bad bytes.
"""
import io
from typing import Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from components import features

JPEG_MAGIC = b'\xff\xd8\xff'
JPEG_EOI = b'\xff\xd9'  # end-of-image marker
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_QUALITY = 95


class BadInput(ValueError):
  """An input pair that cannot become a valid example; str() is the reason."""


def _open(data: bytes, what: str) -> Image.Image:
  if not data:
    raise BadInput(f'{what} file is empty (0 bytes)')
  try:
    img = Image.open(io.BytesIO(data))
    img.load()  # Forces a full decode: truncated files fail here, not downstream.
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise BadInput(f'{what} cannot be decoded: {e}') from e
  return img


def normalise_image(data: bytes) -> Tuple[bytes, int, int, str]:
  """Checks that `data` is a decodable image and returns it as RGB baseline JPEG.

  Baseline RGB JPEGs pass through byte for byte. Anything else PIL can decode
  (PNG or GIF named .jpg, RGBA, grayscale, CMYK, progressive...) is converted
  to RGB and re-encoded, so every downstream `tf.io.decode_jpeg` works.

  Args:
    data: the file's bytes.

  Returns:
    (jpeg_bytes, height, width, note) where note says what was normalised ('' if
    nothing).

  Raises:
    BadInput: empty, truncated or undecodable data.
  """
  img = _open(data, 'image')
  # PIL accepts a JPEG without its end-of-image marker when all scan data is
  # there; tf.io.decode_jpeg does not. Pass through only complete files.
  is_plain_jpeg = (data.startswith(JPEG_MAGIC) and data.endswith(JPEG_EOI) and
                   img.mode == 'RGB' and not img.info.get('progressive'))
  if is_plain_jpeg:
    return data, img.height, img.width, ''
  note = f'normalised {img.format or "unknown"} {img.mode} to RGB JPEG'
  out = io.BytesIO()
  img.convert('RGB').save(out, format='JPEG', quality=_JPEG_QUALITY)
  return out.getvalue(), img.height, img.width, note


def validate_trimap(data: bytes, height: int, width: int) -> bytes:
  """Checks a trimap against its image and returns it as a single-channel PNG.

  Args:
    data: the trimap file's bytes.
    height: the image's height.
    width: the image's width.

  Returns:
    PNG bytes (mode 'L', values in {1, 2, 3}); the original bytes when they
    already are exactly that.

  Raises:
    BadInput: undecodable, wrong size, or values outside {1, 2, 3}.
  """
  img = _open(data, 'trimap')
  if (img.height, img.width) != (height, width):
    raise BadInput(f'trimap is {img.width}x{img.height} but the image is '
                   f'{width}x{height}')
  if img.mode not in ('L', 'P', 'I', 'I;16'):
    raise BadInput(f'trimap has mode {img.mode}; expected one channel')
  values = np.asarray(img)
  # min/max first: np.unique sorts every pixel (1.3 ms a trimap); valid values
  # are the contiguous range 1..3, so it is only needed to name bad ones.
  low, high = min(features.VALID_TRIMAP_VALUES), max(features.VALID_TRIMAP_VALUES)
  if values.min() < low or values.max() > high:
    bad = np.setdiff1d(np.unique(values), features.VALID_TRIMAP_VALUES)
    raise BadInput(f'trimap has values {bad[:5].tolist()} outside '
                   f'{list(features.VALID_TRIMAP_VALUES)}')
  if data.startswith(PNG_MAGIC) and img.mode == 'L':
    return data
  out = io.BytesIO()
  Image.fromarray(values.astype(np.uint8), mode='L').save(out, format='PNG')
  return out.getvalue()
