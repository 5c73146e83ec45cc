"""Segments pet photos with a pushed model: a class mask and an overlay per image.

  python -m pipeline.tools.predict MODEL IMAGE_OR_FOLDER... --out DIR [--batch-size 16]

MODEL is an exported SavedModel directory, or a pipeline output directory
(`--output-dir` of local_runner.py), whose newest pushed version
(`serving_model/<highest number>/`) is then used. Folders are expanded to their
.jpg/.jpeg/.png files, sorted. For each image this writes
  DIR/<stem>_mask.png     uint8 class ids (0=pet 1=background 2=border), image size
  DIR/<stem>_overlay.png  the image with the pet tinted green and its border yellow
(<stem>_2, ... when inputs share a stem). A file that cannot be segmented
(missing, unreadable, not an image, above MAX_PIXELS) is reported on stderr
with its reason and skipped. Images go to the model in batches; with many files
a progress line goes to stderr every 64 images.

Large images cost little memory: the model (which sees 128x128) is sent a copy
at most MODEL_INPUT_MAX_SIDE pixels on a side, JPEGs decoded at reduced scale;
the full-size mask is upsampled from the model's probabilities in row strips
and the overlay tinted in the same strips, so only the decoded image and its
mask exist at full size (one image at a time). A 12000x12000 JPEG peaks at
about 1.6 GB, 0.8 GB of it TensorFlow and the model (measured).

Exit status: 0 when at least one image was segmented, 1 when none was, 2 for bad
usage or a MODEL that is not a usable model.
"""
import argparse
import io
import os
import pathlib
import sys
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from components import features
from components.example_gen import validation

EXIT_OK, EXIT_NONE_SEGMENTED, EXIT_USAGE = 0, 1, 2
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
SERVING_MODEL_DIR = 'serving_model'  # where the Pusher writes, under the output dir
# Checked before TF sees the bytes, so a text file named .jpg gets a clear reason.
_MAGIC = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n')  # JPEG, PNG
_FORMATS = ('JPEG', 'PNG')  # the only Pillow plugins that may parse an input
TINTS = {features.PET: (0, 200, 0), features.BORDER: (255, 220, 0)}
ALPHA = 0.5
PROGRESS_EVERY = 64  # images between progress lines on stderr
# Largest image (width x height) segmented; larger ones are skipped. It replaces
# Pillow's decompression-bomb guard (warns above 89 Mpx, refuses above 179 Mpx),
# which would refuse a 12000x12000 (144 Mpx) photo. Such an image costs ~4 bytes
# a pixel decoded plus 1 for the mask: 200 Mpx is ~1 GB.
MAX_PIXELS = 200_000_000
# Longest side of what the model is sent; larger images are downscaled first.
# The model resizes to 128x128 anyway. Photos up to this size (the Oxford pets
# reach 1536) go unchanged, so their masks are exactly the signature's; at
# 1024, a 1536x1024 sample photo's mask differed on 1.8% of pixels (measured).
MODEL_INPUT_MAX_SIDE = 2048
# Pixels per strip of the full-size mask and overlay: bounds their float32
# intermediates (two [3 classes, strip] arrays) to ~50 MB whatever the image's size.
STRIP_PIXELS = 1 << 21

Interpolation = Tuple[np.ndarray, np.ndarray, np.ndarray]  # lower, upper, lerp


class UsageError(Exception):
  """Bad command line or MODEL: exit 2 with a one-line message."""


def resolve_model_dir(path: str) -> str:
  """A SavedModel dir as given, or a pipeline output dir's newest pushed version.

  Args:
    path: a SavedModel directory or a pipeline output directory.

  Returns:
    The SavedModel directory to load.

  Raises:
    UsageError: neither kind of directory, or nothing pushed yet.
  """
  root = pathlib.Path(path)
  if (root / 'saved_model.pb').is_file():
    return str(root)
  if not root.exists():
    raise UsageError(f'model not found: {path} does not exist')
  if not root.is_dir():
    raise UsageError(f'model {path} is not a directory')
  serving = root / SERVING_MODEL_DIR
  if not serving.is_dir():
    raise UsageError(f'{path} is neither a SavedModel (no saved_model.pb) nor a '
                     f'pipeline output dir (no {SERVING_MODEL_DIR}/)')
  # TF-Serving layout: numeric version dirs, the highest is the newest.
  versions = [d for d in serving.iterdir()
              if d.name.isdigit() and (d / 'saved_model.pb').is_file()]
  if not versions:
    raise UsageError(f'no pushed model under {serving} (no blessed run yet?)')
  return str(max(versions, key=lambda d: int(d.name)))


def expand_inputs(paths: List[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
  """Folders -> their image files (sorted); files pass through unchecked.

  Returns:
    (files to segment, without duplicates; [(path, reason)] for empty folders).
  """
  files, problems = [], []
  for path in paths:
    if os.path.isdir(path):
      found = sorted(str(p) for p in pathlib.Path(path).iterdir()
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
      if not found:
        problems.append((path, f'folder has no {"/".join(IMAGE_SUFFIXES)} files'))
      files.extend(found)
    else:
      files.append(path)  # missing or bad files are reported when read
  return list(dict.fromkeys(files)), problems


# --- Reading images --------------------------------------------------------------

def read_bytes(path: str) -> bytes:
  """The file's bytes, or ValueError with a one-line reason."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise ValueError('no such file') from None
  except OSError as e:
    raise ValueError(f'cannot read: {e.strerror or e}') from None
  if not any(data.startswith(magic) for magic in _MAGIC):
    raise ValueError('not a JPEG or PNG image' if data else 'empty file')
  return data


def open_image(data: bytes) -> Image.Image:
  """The image's header (size, mode; no pixels yet), or ValueError with a reason.

  Images above MAX_PIXELS are refused here, before any pixel is decoded.
  """
  limit = Image.MAX_IMAGE_PIXELS
  # Pillow's own guard fires inside open(), before the size is ours to report,
  # and at its lower thresholds: MAX_PIXELS below takes its place.
  Image.MAX_IMAGE_PIXELS = None
  try:
    image = Image.open(io.BytesIO(data), formats=_FORMATS)
  except Exception as e:  # pylint: disable=broad-except
    # Pillow raises many types on malformed bytes (OSError, SyntaxError, ...).
    raise ValueError(f'corrupt image: {e}') from None
  finally:
    Image.MAX_IMAGE_PIXELS = limit
  pixels = image.width * image.height
  if pixels > MAX_PIXELS:
    raise ValueError(f'too large: {image.width}x{image.height} = '
                     f'{pixels / 1e6:.1f} Mpx, above the limit of '
                     f'{MAX_PIXELS / 1e6:.0f} Mpx')
  return image


def _load_rgb(image: Image.Image) -> Image.Image:
  """Decodes the pixels (a truncated file fails here) as 8-bit RGB."""
  try:
    image.load()
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'corrupt image: {e}') from None
  # Not convert('RGB'): it clips 16-bit grayscale, for one.
  return validation.to_rgb(image)  # BadInput is a ValueError with the reason


def bounded_size(width: int, height: int, max_side: int) -> Tuple[int, int]:
  """(width, height) scaled down, aspect kept, so that neither exceeds max_side."""
  longest = max(width, height)
  if longest <= max_side:
    return width, height
  return (max(1, round(width * max_side / longest)),
          max(1, round(height * max_side / longest)))


def model_input(path: str) -> Tuple[bytes, Tuple[int, int]]:
  """What the model is sent for an image, and the image's (height, width).

  Small RGB images go as they are, so the model sees exactly what the
  signature would decode from the file. Others are sent as a PNG of their RGB
  pixels, at most MODEL_INPUT_MAX_SIDE on a side. A large JPEG is decoded at
  1/2, 1/4 or 1/8 scale by the decoder itself (the smallest that is still at
  least that size); PNG has no such mode and is decoded in full.

  Raises:
    ValueError: with a one-line reason, for any file that cannot be segmented.
  """
  data = read_bytes(path)
  image = open_image(data)
  width, height = image.size
  target = bounded_size(width, height, MODEL_INPUT_MAX_SIDE)
  if target == image.size and image.mode == 'RGB':
    _load_rgb(image)  # a corrupt file is refused here, not by the model
    return data, (height, width)
  if target != image.size:
    image.draft('RGB', target)  # JPEG only (a no-op for PNG); stays >= target
  rgb = _load_rgb(image)
  if rgb.size != target:
    rgb = rgb.resize(target, Image.LANCZOS)
  out = io.BytesIO()
  rgb.save(out, format='PNG', compress_level=1)  # lossless; read back at once
  return out.getvalue(), (height, width)


def read_image(path: str) -> Image.Image:
  """The decoded image at full size, 8-bit RGB, or ValueError with a reason."""
  return _load_rgb(open_image(read_bytes(path)))


# --- Full-size mask and overlay, in strips -----------------------------------------

def interpolation(in_size: int, out_size: int) -> Interpolation:
  """Source indices and weights of tf.image.resize's bilinear (half-pixel centres).

  Mirrors TF's kernel in float32, clamping at the edges: the same arithmetic
  gives the same scores, so the argmax agrees even where classes nearly tie.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  half = np.float32(0.5)
  src = (np.arange(out_size, dtype=np.float32) + half) * scale - half
  floor = np.floor(src)
  lower = np.maximum(floor, 0).astype(np.intp)
  upper = np.minimum(np.ceil(src), in_size - 1).astype(np.intp)
  return lower, upper, src - floor


def _lerp(values: np.ndarray, interp: Interpolation, axis: int) -> np.ndarray:
  """Linear interpolation of `values` along `axis`: a + (b - a) * t, as TF."""
  lower, upper, lerp = interp
  shape = [1] * values.ndim
  shape[axis] = -1
  start = np.take(values, lower, axis=axis)
  result = np.take(values, upper, axis=axis)
  result -= start  # in place: each full-width temporary costs a strip's worth
  result *= lerp.reshape(shape)
  result += start
  return result


def _argmax_into(scores: np.ndarray, out: np.ndarray) -> None:
  """Class ids of [C, h, w] scores into uint8 `out`, ties to the lowest id.

  The same comparisons as `export.argmax_uint8`, so ties resolve alike.
  """
  best = scores[0]  # overwritten below: the scores are not needed afterwards
  out[...] = 0
  for class_id in range(1, scores.shape[0]):
    np.copyto(out, class_id, where=scores[class_id] > best)
    np.maximum(best, scores[class_id], out=best)


def upsampled_mask(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
  """[h, w, C] model probabilities -> uint8 class ids [height, width].

  What the signature's class_mask computes (`export.mask_at_size`: bilinear
  resize, then argmax), but strip by strip, so that only the uint8 mask exists
  at full size and not the float32 [height, width, C] resized probabilities.
  """
  planes = np.ascontiguousarray(np.moveaxis(probabilities.astype(np.float32), -1, 0))
  rows = interpolation(planes.shape[1], height)
  columns = interpolation(planes.shape[2], width)
  mask = np.empty((height, width), np.uint8)
  step = max(1, STRIP_PIXELS // width)
  for top in range(0, height, step):
    lower, upper, lerp = (a[top:top + step] for a in rows)
    # TF interpolates along x first, then y: only the model rows this strip
    # reads are widened to full width.
    first, last = lower[0], upper[-1] + 1
    band = _lerp(planes[:, first:last], columns, axis=2)
    scores = _lerp(band, (lower - first, upper - first, lerp), axis=1)
    _argmax_into(scores, mask[top:top + step])
  return mask


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Tints the pet and border pixels of an RGB uint8 image (background unchanged)."""
  out = image.astype(np.float32)
  for class_id, colour in TINTS.items():
    where = mask == class_id
    out[where] = (1 - ALPHA) * out[where] + ALPHA * np.float32(colour)
  return np.round(out).astype(np.uint8)


def _tint_table(class_id: int) -> List[int]:
  """Pillow point() table of `class_id`'s tint: every 8-bit value, per channel.

  Built with `overlay` itself, so the two cannot disagree.
  """
  values = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
  tinted = overlay(values, np.full((1, 256), class_id))  # [1, 256, 3]
  return tinted[0].T.ravel().tolist()  # Pillow's order: all R, then G, then B


def tint_in_place(image: Image.Image, mask: np.ndarray) -> None:
  """`overlay` on an RGB PIL image, strip by strip, written back into it.

  In place and in strips: a full-size float32 copy of a 12000x12000 photo
  would be 1.7 GB. Per-value tables (Pillow's point) and masked pastes do in C
  what `overlay` does with numpy, ~5x faster on such an image (measured).
  """
  tables = {class_id: _tint_table(class_id) for class_id in TINTS}
  step = max(1, STRIP_PIXELS // image.width)
  for top in range(0, image.height, step):
    box = (0, top, image.width, min(top + step, image.height))
    strip = image.crop(box)
    for class_id, table in tables.items():
      where = Image.fromarray(mask[top:box[3]] == class_id)  # mode '1'
      strip.paste(strip.point(table), (0, 0), where)
    image.paste(strip, box)


# --- The model ---------------------------------------------------------------------

def _quiet_tf_import():
  """Imports TF (late, so bad usage is reported without its ~10 s import).

  TF's C++ start-up chatter and a dependency's Python-version notice would bury
  the per-file reasons on stderr; real failures still raise.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  warnings.filterwarnings('ignore', category=FutureWarning, module='google.api_core')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


class Segmenter:
  """Calls a serving_image_bytes signature on batches of encoded images."""

  def __init__(self, signature, owner=None):
    from components.trainer import export  # pylint: disable=g-import-not-at-top
    self._tf = _quiet_tf_import()
    self._signature = signature
    self._input_key = export.IMAGE_BYTES_KEY
    self._owner = owner  # the loaded SavedModel: owns the signature's variables

  @classmethod
  def load(cls, model_dir: str) -> 'Segmenter':
    """From a SavedModel dir; UsageError if it cannot be loaded or lacks the signature."""
    tf = _quiet_tf_import()
    from components.trainer import export  # pylint: disable=g-import-not-at-top
    try:
      loaded = tf.saved_model.load(model_dir)
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise UsageError(f'cannot load model {model_dir}: '
                       f'{str(e).strip().splitlines()[0]}') from None
    if export.IMAGE_BYTES_SIGNATURE not in loaded.signatures:
      raise UsageError(f'model {model_dir} has no {export.IMAGE_BYTES_SIGNATURE} '
                       'signature (exported before it existed?)')
    return cls(loaded.signatures[export.IMAGE_BYTES_SIGNATURE], owner=loaded)

  def _call(self, encoded: List[bytes]) -> Dict[str, np.ndarray]:
    out = self._signature(**{self._input_key: self._tf.constant(encoded)})
    return {key: value.numpy() for key, value in out.items()}

  def probabilities(self, encoded: List[bytes]) -> List[np.ndarray]:
    """[128, 128, C] float32 class probabilities per image (what predict uses)."""
    return list(self._call(encoded)[features.PROBABILITIES_KEY])

  def masks(self, encoded: List[bytes]) -> List[np.ndarray]:
    """The signature's own uint8 class-id masks, each at its encoded image's size.

    Not used by predict (they are made at the size of the bytes sent, padded
    to the batch's largest); kept as the reference `upsampled_mask` matches.
    """
    out = self._call(encoded)
    return [np.ascontiguousarray(m[:h, :w]) for m, h, w in zip(
        out[features.CLASS_MASK_KEY], out[features.HEIGHT_KEY], out[features.WIDTH_KEY])]

  def probabilities_or_errors(self, encoded: List[bytes]) -> List:
    """Like `probabilities`; if the batch fails, per image: a result or a ValueError."""
    return self._isolating(self.probabilities, encoded)

  def masks_or_errors(self, encoded: List[bytes]) -> List:
    """Like `masks`; if the batch fails, per image: a mask or a ValueError."""
    return self._isolating(self.masks, encoded)

  def _isolating(self, call: Callable[[List[bytes]], List], encoded: List[bytes]) -> List:
    try:
      return call(encoded)
    except self._tf.errors.InvalidArgumentError:
      pass  # one bad image fails the whole batch: find it one by one
    results = []
    for data in encoded:
      try:
        results.extend(call([data]))
      except self._tf.errors.InvalidArgumentError as e:
        results.append(ValueError(
            f'the model could not decode it: {e.message.strip().splitlines()[0]}'))
    return results


# --- The command -------------------------------------------------------------------

def write_outputs(out_dir: str, stem: str, path: str, probabilities: np.ndarray) -> None:
  """Decodes `path` at full size and writes its mask and overlay PNGs.

  The file is read again rather than kept from `model_input`: a batch then
  holds only small model inputs, and one full-size image exists at a time.
  """
  image = read_image(path)
  mask = upsampled_mask(probabilities, image.height, image.width)
  Image.fromarray(mask).save(os.path.join(out_dir, f'{stem}_mask.png'))
  tint_in_place(image, mask)
  image.save(os.path.join(out_dir, f'{stem}_overlay.png'))


def _output_stem(path: str, used: Dict[str, int]) -> str:
  """<stem>, or <stem>_<n> when an earlier input had the same stem."""
  stem = pathlib.Path(path).stem
  used[stem] = used.get(stem, 0) + 1
  return stem if used[stem] == 1 else f'{stem}_{used[stem]}'


def _skip(path: str, reason) -> None:
  print(f'predict: skipped {path}: {reason}', file=sys.stderr)


def _model_inputs(paths: List[str]) -> List[Tuple[str, bytes]]:
  """(path, bytes for the model) of the readable images; the others are reported."""
  readable = []
  for path in paths:
    try:
      readable.append((path, model_input(path)[0]))
    except ValueError as e:
      _skip(path, e)
  return readable


def segment_files(segmenter: Segmenter, files: List[str], out_dir: str,
                  batch_size: int) -> int:
  """Writes mask and overlay per file; returns how many were segmented."""
  done, used_stems = 0, {}
  for start in range(0, len(files), batch_size):
    batch = files[start:start + batch_size]
    readable = _model_inputs(batch)
    results = (segmenter.probabilities_or_errors([data for _, data in readable])
               if readable else [])
    for (path, _), result in zip(readable, results):
      if isinstance(result, ValueError):
        _skip(path, result)
        continue
      try:
        write_outputs(out_dir, _output_stem(path, used_stems), path, result)
        done += 1
      except (ValueError, OSError) as e:
        _skip(path, e)
    seen = start + len(batch)
    if len(files) > PROGRESS_EVERY and seen // PROGRESS_EVERY > start // PROGRESS_EVERY:
      print(f'predict: {seen}/{len(files)} images, {done} segmented', file=sys.stderr)
  return done


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m pipeline.tools.predict',
                              description=__doc__.split('\n')[0])
  p.add_argument('model', metavar='MODEL',
                 help='SavedModel dir, or pipeline output dir (newest pushed model)')
  p.add_argument('inputs', metavar='IMAGE_OR_FOLDER', nargs='+',
                 help='image files (JPEG/PNG) or folders of them')
  p.add_argument('--out', required=True, metavar='DIR',
                 help='where <stem>_mask.png and <stem>_overlay.png go')
  p.add_argument('--batch-size', type=int, default=16,
                 help='images per model call (default 16)')
  args = p.parse_args(argv)
  if args.batch_size < 1:
    p.error('--batch-size must be at least 1')
  return args


def main(argv: Optional[List[str]] = None) -> int:
  """Runs the command; returns the exit status (see the module docstring)."""
  try:
    args = parse_args(argv)
  except SystemExit as e:  # argparse has printed its message
    return EXIT_USAGE if e.code else EXIT_OK
  try:
    model_dir = resolve_model_dir(args.model)
    files, problems = expand_inputs(args.inputs)
    for path, reason in problems:
      _skip(path, reason)
    if not files:
      return EXIT_NONE_SEGMENTED
    try:
      os.makedirs(args.out, exist_ok=True)
    except OSError as e:
      raise UsageError(f'cannot create --out {args.out}: {e.strerror or e}') from None
    segmenter = Segmenter.load(model_dir)
  except UsageError as e:
    print(f'predict: {e}', file=sys.stderr)
    return EXIT_USAGE
  done = segment_files(segmenter, files, args.out, args.batch_size)
  print(f'segmented {done} of {len(files)} images with {model_dir} into {args.out}')
  return EXIT_OK if done else EXIT_NONE_SEGMENTED


if __name__ == '__main__':
  sys.exit(main())
