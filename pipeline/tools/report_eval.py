"""Scores a trained model on the whole eval split, image by image, in batches.

Predictions come from the model's `serving_default` signature on the raw eval
tf.Examples, truth and the model-size image from its `transform_features`
signature: what the Evaluator scored, pixel for pixel. Memory stays bounded
whatever the split's size: per image only a row of numbers is kept, plus the
arrays of the K worst and K best images (two heaps of K).
"""
import dataclasses
import heapq
import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from components import features
from components.example_gen.descriptors import breed_name
from components.trainer import export

BATCH_SIZE = 32  # eval examples per model call: ~13 MB of int64 pixels
EVAL_SPLIT_GLOB = os.path.join('Split-eval', '*')


@dataclasses.dataclass
class ImageScore:
  """One eval image's scores.

  Attributes:
    index: position in the eval split (files sorted, records in order).
    name: the example's file name (shown, never part of a path).
    species: 'cat', 'dog' or the raw id.
    breed: the example's breed, else the file name before its last '_'.
    iou: mean IoU over the classes present in truth or prediction.
    pixel_accuracy: fraction of pixels predicted right.
  """
  index: int
  name: str
  species: str
  breed: str
  iou: float
  pixel_accuracy: float


@dataclasses.dataclass
class Picture:
  """What a report picture shows: model-size image, truth and prediction."""
  score: ImageScore
  image: np.ndarray      # uint8 [H, W, 3]
  truth: np.ndarray      # uint8 [H, W] class ids
  predicted: np.ndarray  # uint8 [H, W] class ids


@dataclasses.dataclass
class EvalScores:
  """The whole eval split's scores.

  Attributes:
    images: one ImageScore per eval example, in split order.
    confusion: int64 [C, C] pixel counts, rows truth, columns prediction.
    by_slice: slice feature -> value -> its [C, C] confusion.
    worst: the K lowest-IoU pictures, lowest first (ties: split order).
    best: the K highest-IoU pictures, highest first (ties: split order).
  """
  images: List[ImageScore]
  confusion: np.ndarray
  by_slice: Dict[str, Dict[str, np.ndarray]]
  worst: List[Picture]
  best: List[Picture]


def confusion(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
  """[C, C] int64 pixel counts of class ids, rows truth, columns prediction."""
  n = features.NUM_CLASSES
  pairs = truth.astype(np.int64).ravel() * n + predicted.astype(np.int64).ravel()
  return np.bincount(pairs, minlength=n * n).reshape(n, n)


def class_iou(counts: np.ndarray) -> np.ndarray:
  """IoU per class of a confusion matrix; NaN for a class in neither mask."""
  intersection = np.diag(counts).astype(np.float64)
  union = counts.sum(axis=0) + counts.sum(axis=1) - intersection
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(union > 0, intersection / union, np.nan)


def mean_iou(counts: np.ndarray) -> float:
  """Mean IoU over the classes present in truth or prediction (as MeanIoU)."""
  return float(np.nanmean(class_iou(counts)))


def image_iou(truth: np.ndarray, predicted: np.ndarray) -> float:
  """One image's mean IoU over the classes present in truth or prediction."""
  return mean_iou(confusion(truth, predicted))


def _text(feature, default: str = '') -> str:
  values = feature.bytes_list.value
  return values[0].decode(errors='replace') if values else default


def describe(serialized: bytes) -> Tuple[str, str, str]:
  """(file name, species, breed) of a raw eval tf.Example."""
  example = tf.train.Example.FromString(serialized).features.feature
  name = (_text(example[features.FILE_NAME_KEY])
          if features.FILE_NAME_KEY in example else '')
  species_ids = (example[features.SPECIES_KEY].int64_list.value
                 if features.SPECIES_KEY in example else [])
  species = (features.SPECIES_NAMES.get(species_ids[0], str(species_ids[0]))
             if species_ids else '?')
  # Older examples have no breed feature: the Oxford names are <Breed>_<n>.
  breed = (_text(example[features.BREED_KEY])
           if features.BREED_KEY in example else '') or breed_name(name)
  return name, species, breed


def eval_batches(examples_uri: str, batch_size: int) -> Iterator[np.ndarray]:
  """The raw eval split's serialized tf.Examples, `batch_size` at a time."""
  files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, EVAL_SPLIT_GLOB)))
  if not files:
    raise ValueError(f'no eval split under {examples_uri}')
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(batch_size)
  for batch in dataset:
    yield batch.numpy()


class _Extremes:
  """The K lowest and K highest (iou, index) items seen, in bounded heaps."""

  def __init__(self, k: int):
    self._k = k
    # Heap tops are the items to drop next: for the worst, the highest IoU
    # (then the later index); for the best, the lowest IoU (then the later).
    self._worst: List[Tuple[float, int, Picture]] = []
    self._best: List[Tuple[float, int, Picture]] = []

  def wants(self, iou: float, index: int) -> bool:
    """Whether an item would enter either heap (so its arrays are worth keeping)."""
    if self._k <= 0:
      return False
    return (len(self._worst) < self._k or (-iou, -index) > self._worst[0][:2] or
            len(self._best) < self._k or (iou, -index) > self._best[0][:2])

  def add(self, picture: Picture) -> None:
    iou, index = picture.score.iou, picture.score.index
    for heap, key in ((self._worst, (-iou, -index)), (self._best, (iou, -index))):
      if len(heap) < self._k:
        heapq.heappush(heap, key + (picture,))
      elif key > heap[0][:2]:
        heapq.heapreplace(heap, key + (picture,))

  def worst(self) -> List[Picture]:
    return [p for _, _, p in sorted(self._worst, reverse=True)]

  def best(self) -> List[Picture]:
    return [p for _, _, p in sorted(self._best, reverse=True)]


def score_eval_split(model, examples_uri: str, num_pictures: int,
                     batch_size: int = BATCH_SIZE) -> EvalScores:
  """Runs `model` over the whole eval split and scores every image.

  Args:
    model: the loaded SavedModel (`tf.saved_model.load` of Format-Serving).
    examples_uri: the raw Examples artifact's directory.
    num_pictures: K, how many worst and how many best images to keep.
    batch_size: examples per model call.

  Returns:
    The EvalScores.
  """
  serve = model.signatures[export.SERVING_SIGNATURE]
  transform = model.signatures[export.TRANSFORM_SIGNATURE]
  n = features.NUM_CLASSES
  total = np.zeros((n, n), np.int64)
  by_slice: Dict[str, Dict[str, np.ndarray]] = {features.SPECIES_KEY: {},
                                                features.BREED_KEY: {}}
  images: List[ImageScore] = []
  extremes = _Extremes(num_pictures)
  for batch in eval_batches(examples_uri, batch_size):
    records = tf.constant(batch)
    predicted = serve(examples=records)[features.CLASS_MASK_KEY].numpy().astype(np.uint8)
    transformed = transform(examples=records)
    truth = transformed[features.LABEL_KEY].numpy()[..., 0].astype(np.uint8)
    pixels = transformed[features.IMAGE_XF_KEY].numpy()
    for offset, serialized in enumerate(batch):
      counts = confusion(truth[offset], predicted[offset])
      name, species, breed = describe(serialized)
      score = ImageScore(index=len(images), name=name, species=species, breed=breed,
                         iou=mean_iou(counts),
                         pixel_accuracy=float(np.trace(counts) / counts.sum()))
      images.append(score)
      total += counts
      for column, value in ((features.SPECIES_KEY, species),
                            (features.BREED_KEY, breed)):
        slice_counts = by_slice[column].setdefault(value, np.zeros((n, n), np.int64))
        slice_counts += counts
      if extremes.wants(score.iou, score.index):
        extremes.add(Picture(score, np.clip(pixels[offset], 0, 255).astype(np.uint8),
                             truth[offset].copy(), predicted[offset].copy()))
  return EvalScores(images=images, confusion=total, by_slice=by_slice,
                    worst=extremes.worst(), best=extremes.best())


def slice_metrics(counts: np.ndarray, num_examples: int) -> Dict[str, Optional[float]]:
  """The Evaluator's metric names computed from a slice's confusion matrix."""
  ious = class_iou(counts)
  metrics = {features.MEAN_IOU: mean_iou(counts),
             features.PIXEL_ACCURACY: float(np.trace(counts) / max(counts.sum(), 1))}
  for class_id, class_name in enumerate(features.CLASS_NAMES):
    # MeanIoU-style divide_no_nan: a class in neither mask scores 0.
    iou = ious[class_id]
    metrics[f'iou_{class_name}'] = 0.0 if np.isnan(iou) else float(iou)
  metrics['num_examples'] = num_examples
  return metrics
