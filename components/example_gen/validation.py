"""Pure helpers that validate one image/trimap pair and normalise it for storage.

Used by the ExampleGen's Beam DoFn and by the ingestion benchmark's plain loop, so
both do exactly the same work. Every rejection is a `BadInput` with a reason a
person can act on; nothing here raises anything else for bad bytes.

Images are opened in two steps: the header first (size and mode, no pixels),
then the pixels only if the size is within the limit, so a huge or forged
image costs no memory.
"""
import contextlib
import io
import re
from typing import Iterator, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from components import features

JPEG_MAGIC = b'\xff\xd8\xff'
JPEG_EOI = b'\xff\xd9'  # end-of-image marker
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
PNG_IEND = b'IEND\xaeB`\x82'  # the IEND chunk's type and CRC: a complete PNG ends so
_JPEG_QUALITY = 95
# Raster formats a photo or trimap plausibly comes in. Pillow would also try
# EPS (which runs Ghostscript), fonts, icons and a few dozen rarer formats on
# whatever bytes it is given; none of them belongs in this dataset.
ACCEPTED_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WEBP', 'PPM')
# One-channel integer modes, as Pillow opens 16-bit grayscale PNG/TIFF files.
_SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')
TRIMAP_MODES = ('L', 'P') + _SIXTEEN_BIT_MODES
_PILLOW_PIXELS = re.compile(r'\((\d+) pixels\)')


class BadInput(ValueError):
  """An input pair that cannot become a valid example; str() is the reason."""


def _mpx(pixels: int) -> str:
  return f'{pixels / 1e6:.1f} Mpx'


def _too_large(what: str, pixels: int, max_pixels: Optional[int],
               size: str = '') -> BadInput:
  """The reason for an image above the pixel limit (size: 'WxH = ' if known)."""
  if max_pixels is not None and pixels > max_pixels:
    return BadInput(f'{what} is {size}{_mpx(pixels)}, above the limit of '
                    f'{_mpx(max_pixels)}')
  # Only Pillow's own decompression-bomb guard (2 x Image.MAX_IMAGE_PIXELS)
  # refused it: max_image_pixels is set above what Pillow will open.
  return BadInput(f'{what} is {size}{_mpx(pixels)}, above Pillow\'s '
                  f'decompression-bomb limit of {_mpx(2 * Image.MAX_IMAGE_PIXELS)}')


@contextlib.contextmanager
def _pillow_errors(what: str, action: str = 'decoded',
                   max_pixels: Optional[int] = None) -> Iterator[None]:
  """Turns whatever Pillow raises on hostile bytes into a BadInput.

  Pillow's decoders raise far more than OSError on malformed data (SyntaxError,
  struct.error, EOFError, IndexError, TypeError, MemoryError, ...), and which
  one depends on the format plugin: for bytes from outside, any exception from
  Pillow means the file cannot be used, never a bug to crash the run on.
  """
  try:
    yield
  except BadInput:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    # Raised by Image.open before the size is visible to us; the message
    # carries the pixel count.
    match = _PILLOW_PIXELS.search(str(e))
    if match is None:
      raise BadInput(f'{what} is too large to decode safely: {e}') from e
    raise _too_large(what, int(match.group(1)), max_pixels) from e
  except UnidentifiedImageError as e:
    raise BadInput(f'{what} cannot be {action}: not an image in an accepted '
                   f'format ({", ".join(ACCEPTED_FORMATS)})') from e
  except Exception as e:  # pylint: disable=broad-except
    raise BadInput(f'{what} cannot be {action}: {type(e).__name__}: {e}') from e


def _open_header(data: bytes, what: str,
                 max_pixels: Optional[int] = None) -> Image.Image:
  """Opens `data` without decoding pixels: size, mode and format only."""
  if not data:
    raise BadInput(f'{what} file is empty (0 bytes)')
  with _pillow_errors(what, max_pixels=max_pixels):
    img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
  if img.width < 1 or img.height < 1:
    raise BadInput(f'{what} has no pixels ({img.width}x{img.height})')
  pixels = img.width * img.height
  if max_pixels is not None and pixels > max_pixels:
    raise _too_large(what, pixels, max_pixels, f'{img.width}x{img.height} = ')
  return img


def _load(img: Image.Image, what: str, max_pixels: Optional[int] = None) -> None:
  """Decodes every pixel: truncated files fail here, not downstream."""
  with _pillow_errors(what, max_pixels=max_pixels):
    img.load()


def _sixteen_bit_to_rgb(img: Image.Image) -> Image.Image:
  """16-bit grayscale -> 8-bit RGB by keeping the high byte (value >> 8).

  Pillow's own convert() clips these modes at 255 (a mid-gray 16-bit image
  turns white); the high byte is also how Pillow reduces 16-bit RGB PNGs.
  Mode 'I' (32-bit) is how some readers deliver 16-bit samples, so it is taken
  as 16-bit and refused when its values do not fit.
  """
  values = np.asarray(img)
  low, high = int(values.min()), int(values.max())
  if low < 0 or high > 0xFFFF:
    raise BadInput(f'image has mode {img.mode} with values {low}..{high} '
                   'outside the 16-bit range 0..65535')
  return Image.fromarray((values >> 8).astype(np.uint8)).convert('RGB')


def to_rgb(img: Image.Image) -> Image.Image:
  """A decoded image of any mode Pillow opens, as 8-bit RGB.

  Alpha is dropped, not composited: the trimap annotates the photo's colour
  pixels, including those an alpha channel hides, and painting them white
  would hide the pet from the model (RGBA, LA, PA, palette transparency).
  Premultiplied 'RGBa' is un-premultiplied by Pillow. Float images ('F') are
  refused: their value range is not defined, so any scaling would be a guess.

  Args:
    img: a loaded image.

  Returns:
    The image in mode 'RGB'.

  Raises:
    BadInput: for a mode with no faithful 8-bit RGB form.
  """
  if img.mode == 'RGB':
    return img
  if img.mode in _SIXTEEN_BIT_MODES:
    return _sixteen_bit_to_rgb(img)
  if img.mode == 'F':
    raise BadInput('image has mode F (32-bit float samples): its value range '
                   'is undefined, so it cannot be scaled to 8 bits')
  try:
    return img.convert('RGB')
  except ValueError as e:  # Pillow has no conversion for a few modes (e.g. 'La').
    raise BadInput(f'image has mode {img.mode}, which cannot be converted to '
                   f'RGB: {e}') from e


def _is_plain_jpeg(data: bytes, img: Image.Image) -> bool:
  """Whether `data` may be stored byte for byte (every TF decoder reads it).

  PIL accepts a JPEG without its end-of-image marker when all scan data is
  there; tf.io.decode_jpeg does not. Pass through only complete files.
  """
  return (data.startswith(JPEG_MAGIC) and data.endswith(JPEG_EOI) and
          img.mode == 'RGB' and not img.info.get('progressive'))


def normalise_image(data: bytes, max_pixels: Optional[int] = None
                    ) -> Tuple[bytes, int, int, str]:
  """Checks that `data` is a decodable image and returns it as RGB baseline JPEG.

  Baseline RGB JPEGs pass through byte for byte. Anything else PIL can decode
  (PNG or GIF named .jpg, RGBA, grayscale, 16-bit, CMYK, progressive...) is
  converted to RGB (`to_rgb`) and re-encoded, so every downstream
  `tf.io.decode_jpeg` works.

  Args:
    data: the file's bytes.
    max_pixels: refuse images with more pixels (width x height), read from the
      header before any pixel is decoded; None for Pillow's own limit only.

  Returns:
    (jpeg_bytes, height, width, note) where note says what was normalised ('' if
    nothing).

  Raises:
    BadInput: empty, truncated, undecodable, too large, or of a mode with no
      faithful RGB form.
  """
  img = _open_header(data, 'image', max_pixels)
  _load(img, 'image', max_pixels)
  if _is_plain_jpeg(data, img):
    return data, img.height, img.width, ''
  note = f'normalised {img.format or "unknown"} {img.mode} to RGB JPEG'
  with _pillow_errors('image', 'converted to RGB'):
    rgb = to_rgb(img)
  out = io.BytesIO()
  with _pillow_errors('image', 're-encoded as JPEG'):
    rgb.save(out, format='JPEG', quality=_JPEG_QUALITY)
  return out.getvalue(), img.height, img.width, note


def validate_trimap(data: bytes, height: int, width: int) -> bytes:
  """Checks a trimap against its image and returns it as a single-channel PNG.

  Size and mode are checked from the header, before any pixel is decoded.

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
  img = _open_header(data, 'trimap')
  if (img.height, img.width) != (height, width):
    raise BadInput(f'trimap is {img.width}x{img.height} but the image is '
                   f'{width}x{height}')
  if img.mode not in TRIMAP_MODES:
    raise BadInput(f'trimap has mode {img.mode}; expected one channel of '
                   f'integers ({", ".join(TRIMAP_MODES)})')
  _load(img, 'trimap')
  with _pillow_errors('trimap'):
    values = np.asarray(img)
  # min/max first: np.unique sorts every pixel (1.3 ms a trimap); valid values
  # are the contiguous range 1..3, so it is only needed to name bad ones.
  low, high = min(features.VALID_TRIMAP_VALUES), max(features.VALID_TRIMAP_VALUES)
  if values.min() < low or values.max() > high:
    bad = np.setdiff1d(np.unique(values), features.VALID_TRIMAP_VALUES)
    raise BadInput(f'trimap has values {bad[:5].tolist()} outside '
                   f'{list(features.VALID_TRIMAP_VALUES)}')
  # A complete 'L' PNG is stored as is; anything else (or a PNG that may be cut
  # short, which PIL reads but libpng may refuse) is re-encoded.
  if data.startswith(PNG_MAGIC) and data.endswith(PNG_IEND) and img.mode == 'L':
    return data
  out = io.BytesIO()
  Image.fromarray(values.astype(np.uint8)).save(out, format='PNG')
  return out.getvalue()
