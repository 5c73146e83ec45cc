"""The evaluation report a person reads: `<output>/report/index.html`.

One static page, every picture a PNG file beside it (no data: URIs, nothing
fetched from elsewhere), so the folder can be copied, served or attached as is:
  - the metrics against the baseline, with every blessing check's outcome;
  - per-slice metrics (species, breed) and the 3x3 pixel confusion matrix;
  - per-image IoU over the whole eval split (`per_image_iou.csv` too), and the
    K worst and K best images: image | truth | prediction | overlay;
  - the Trainer's loss and pixel-accuracy curves, fine-tuning marked;
  - the pipeline's runs in its metadata store: mean IoU, blessings, pushes.
Predictions come from the trained model's `serving_default` signature on the
raw eval tf.Examples, i.e. exactly what the Evaluator scored (report_eval.py).
"""
import collections
import csv
import io
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from components import features
from components.trainer import module as trainer_lib
from pipeline.tools import plots
from pipeline.tools import predict
from pipeline.tools import report_eval
from pipeline.tools import report_history
from pipeline.tools import report_html

REPORT_DIR = 'report'
INDEX = 'index.html'
PER_IMAGE_CSV = 'per_image_iou.csv'
CURVES_PNG = 'training_curves.png'
HISTORY_PNG = 'run_history.png'
IOU_HISTOGRAM_PNG = 'iou_histogram.png'
PICTURE_PREFIX = 'eval_'  # eval_<index in the split>.png
_SCALE = 2
# Display colours per class id: pet, background, border.
_PALETTE = np.array([(0, 200, 0), (40, 40, 40), (255, 220, 0)], np.uint8)


def _panel(picture: report_eval.Picture) -> Image.Image:
  """image | true mask | predicted mask | overlay, side by side, scaled up."""
  tiles = [picture.image, _PALETTE[picture.truth], _PALETTE[picture.predicted],
           predict.overlay(picture.image, picture.predicted)]
  strip = Image.fromarray(np.concatenate(tiles, axis=1))
  return strip.resize((strip.width * _SCALE, strip.height * _SCALE), Image.NEAREST)


def picture_name(index: int) -> str:
  # Numbered: no name from a list file ever becomes part of a path.
  return f'{PICTURE_PREFIX}{index:05d}.png'


def _clear(report_dir: str) -> None:
  """Removes what an earlier report wrote here (its pictures were other images)."""
  ours = {INDEX, PER_IMAGE_CSV, CURVES_PNG, HISTORY_PNG, IOU_HISTOGRAM_PNG}
  for name in tf.io.gfile.listdir(report_dir):
    if name in ours or (name.startswith(PICTURE_PREFIX) and name.endswith('.png')):
      tf.io.gfile.remove(os.path.join(report_dir, name))


def _save_png(report_dir: str, name: str, draw) -> str:
  """Calls draw(file object) and writes its PNG bytes to report_dir/name."""
  buffer = io.BytesIO()
  draw(buffer)
  with tf.io.gfile.GFile(os.path.join(report_dir, name), 'wb') as f:
    f.write(buffer.getvalue())
  return name


def _write_csv(path: str, images: List[report_eval.ImageScore]) -> None:
  with tf.io.gfile.GFile(path, 'w') as f:
    writer = csv.writer(f)
    writer.writerow(['index', 'file_name', 'species', 'breed', 'iou', 'pixel_accuracy'])
    for s in images:
      writer.writerow([s.index, s.name, s.species, s.breed, f'{s.iou:.6f}',
                       f'{s.pixel_accuracy:.6f}'])


def read_training_history(model_uri: str) -> Optional[Dict[str, Any]]:
  """The Trainer's training_history.json, or None (models trained before it)."""
  path = os.path.join(model_uri, trainer_lib.HISTORY_JSON)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def slice_metrics(summary: Dict[str, Any], scores: report_eval.EvalScores
                  ) -> Tuple[Dict[str, Dict[str, Dict[str, Any]]], bool]:
  """Per-slice metrics: the Evaluator's (summary), else the report's own.

  The report's come from the same predictions and labels, so they agree with
  TFMA's; they stand in for runs whose Evaluator did not slice.

  Returns:
    ({feature: {value: {metric: value, 'num_examples': n}}}, whether TFMA's).
  """
  if any((summary.get('metrics_by_slice') or {}).values()):
    return summary['metrics_by_slice'], True
  sizes = {features.SPECIES_KEY: collections.Counter(s.species for s in scores.images),
           features.BREED_KEY: collections.Counter(s.breed for s in scores.images)}
  return {column: {value: report_eval.slice_metrics(matrix, sizes[column][value])
                   for value, matrix in by_value.items()}
          for column, by_value in scores.by_slice.items()}, False


def write_report(summary: Dict[str, Any], output_dir: str, num_images: int,
                 store=None) -> str:
  """Writes the report of a run; returns the index.html path.

  Args:
    summary: the run summary (pipeline/tools/summary.py).
    output_dir: the pipeline's output dir; the report goes to its report/.
    num_images: K: the K worst and the K best eval images are pictured.
    store: the run's ML Metadata store, for the pipeline's run history
      (without it the page says the history was not read).

  Returns:
    The path of index.html.
  """
  report_dir = os.path.join(output_dir, REPORT_DIR)
  tf.io.gfile.makedirs(report_dir)
  _clear(report_dir)
  model = tf.saved_model.load(os.path.join(summary['model']['uri'], 'Format-Serving'))
  scores = report_eval.score_eval_split(model, summary['examples_uri'], num_images)
  del model  # its graph and variables are not needed for the drawing
  pictured = {p.score.index: p for p in scores.worst + scores.best}
  for index, picture in pictured.items():
    _save_png(report_dir, picture_name(index),
              lambda f, p=picture: _panel(p).save(f, format='PNG'))
  _write_csv(os.path.join(report_dir, PER_IMAGE_CSV), scores.images)
  ious = [s.iou for s in scores.images]
  files = {'histogram': _save_png(report_dir, IOU_HISTOGRAM_PNG,
                                  lambda f: plots.iou_histogram(ious, f))}
  training = read_training_history(summary['model']['uri'])
  if training and training.get('epochs'):
    files['curves'] = _save_png(report_dir, CURVES_PNG,
                                lambda f: plots.training_curves(training, f))
  run_records, history_problem = None, None
  if store is not None:
    try:
      run_records = report_history.pipeline_history(store, summary['run_id'])
    except Exception as e:  # pylint: disable=broad-except
      # The history is context: an unreadable store (or an earlier run's
      # unreadable evaluation) must not cost the run its report.
      history_problem = f'{type(e).__name__}: {e}'.splitlines()[0]
  if run_records:
    files['history'] = _save_png(report_dir, HISTORY_PNG, lambda f: plots.run_history(
        run_records, summary['run_id'], f))
  slices, from_evaluator = slice_metrics(summary, scores)
  page = report_html.page(report_html.Content(
      summary=summary, scores=scores, slices=slices,
      slices_from_evaluator=from_evaluator, training=training,
      history_problem=history_problem, runs=run_records, files=files,
      picture=picture_name,
      csv_name=PER_IMAGE_CSV, scale=_SCALE))
  index = os.path.join(report_dir, INDEX)
  with tf.io.gfile.GFile(index, 'w') as f:
    f.write(page)
  return index
