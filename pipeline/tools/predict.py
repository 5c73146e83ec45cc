"""Segments pet photos with a pushed model: a class mask and an overlay per image.

  python -m pipeline.tools.predict MODEL IMAGE_OR_FOLDER... --out DIR [--batch-size 16]

MODEL is an exported SavedModel directory, or a pipeline output directory
(`--output-dir` of local_runner.py), whose newest pushed version
(`serving_model/<highest number>/`) is then used. Folders are expanded to their
.jpg/.jpeg/.png files, sorted. For each image this writes
  DIR/<stem>_mask.png     uint8 class ids (0=pet 1=background 2=border), image size
  DIR/<stem>_overlay.png  the image with the pet tinted green and its border yellow
(<stem>_2, ... when inputs share a stem). A file that cannot be segmented
(missing, unreadable, not an image) is reported on stderr with its reason and
skipped. Images go to the model in batches; with many files a progress line
goes to stderr every 64 images.

Exit status: 0 when at least one image was segmented, 1 when none was, 2 for bad
usage or a MODEL that is not a usable model.
"""
import argparse
import io
import os
import pathlib
import sys
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from components import features

EXIT_OK, EXIT_NONE_SEGMENTED, EXIT_USAGE = 0, 1, 2
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
SERVING_MODEL_DIR = 'serving_model'  # where the Pusher writes, under the output dir
# Checked before TF sees the bytes, so a text file named .jpg gets a clear reason.
_MAGIC = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n')  # JPEG, PNG
TINTS = {features.PET: (0, 200, 0), features.BORDER: (255, 220, 0)}
ALPHA = 0.5
PROGRESS_EVERY = 64  # images between progress lines on stderr


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


def read_image(path: str) -> Tuple[bytes, Image.Image]:
  """Encoded bytes and the decoded RGB image, or ValueError with a one-line reason."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise ValueError('no such file') from None
  except OSError as e:
    raise ValueError(f'cannot read: {e.strerror or e}') from None
  if not any(data.startswith(magic) for magic in _MAGIC):
    raise ValueError('not a JPEG or PNG image' if data else 'empty file')
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes now: a truncated file fails here, not in the model
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'corrupt image: {e}') from None
  return data, image.convert('RGB')


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Tints the pet and border pixels of an RGB uint8 image (background unchanged)."""
  out = image.astype(np.float32)
  for class_id, colour in TINTS.items():
    where = mask == class_id
    out[where] = (1 - ALPHA) * out[where] + ALPHA * np.float32(colour)
  return np.round(out).astype(np.uint8)


def _output_stem(path: str, used: Dict[str, int]) -> str:
  """<stem>, or <stem>_<n> when an earlier input had the same stem."""
  stem = pathlib.Path(path).stem
  used[stem] = used.get(stem, 0) + 1
  return stem if used[stem] == 1 else f'{stem}_{used[stem]}'


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

  def masks(self, encoded: List[bytes]) -> List[np.ndarray]:
    """uint8 class-id masks, each at its image's own size."""
    out = self._signature(**{self._input_key: self._tf.constant(encoded)})
    masks = out[features.CLASS_MASK_KEY].numpy()
    heights = out[features.HEIGHT_KEY].numpy()
    widths = out[features.WIDTH_KEY].numpy()
    return [np.ascontiguousarray(m[:h, :w]) for m, h, w in zip(masks, heights, widths)]

  def masks_or_errors(self, encoded: List[bytes]) -> List:
    """Like `masks`; if the batch fails, per image: a mask or a ValueError."""
    try:
      return self.masks(encoded)
    except self._tf.errors.InvalidArgumentError:
      pass  # one bad image fails the whole batch: find it one by one
    results = []
    for data in encoded:
      try:
        results.extend(self.masks([data]))
      except self._tf.errors.InvalidArgumentError as e:
        results.append(ValueError(
            f'the model could not decode it: {e.message.strip().splitlines()[0]}'))
    return results


def _write(out_dir: str, stem: str, image: Image.Image, mask: np.ndarray) -> None:
  if mask.shape != (image.height, image.width):
    raise ValueError(f'mask {mask.shape} does not match the image '
                     f'{(image.height, image.width)}')
  Image.fromarray(mask).save(os.path.join(out_dir, f'{stem}_mask.png'))
  Image.fromarray(overlay(np.asarray(image), mask)).save(
      os.path.join(out_dir, f'{stem}_overlay.png'))


def _skip(path: str, reason) -> None:
  print(f'predict: skipped {path}: {reason}', file=sys.stderr)


def _read_all(paths: List[str]) -> List[Tuple[str, bytes, Image.Image]]:
  """(path, bytes, image) of the readable images; the others are reported."""
  readable = []
  for path in paths:
    try:
      readable.append((path, *read_image(path)))
    except ValueError as e:
      _skip(path, e)
  return readable


def segment_files(segmenter: Segmenter, files: List[str], out_dir: str,
                  batch_size: int) -> int:
  """Writes mask and overlay per file; returns how many were segmented."""
  done, used_stems = 0, {}
  for start in range(0, len(files), batch_size):
    batch = files[start:start + batch_size]
    readable = _read_all(batch)
    results = segmenter.masks_or_errors([data for _, data, _ in readable]) if readable else []
    for (path, _, image), result in zip(readable, results):
      if isinstance(result, ValueError):
        _skip(path, result)
        continue
      try:
        _write(out_dir, _output_stem(path, used_stems), image, result)
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
