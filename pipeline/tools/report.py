"""The evaluation report: pictures of eval images with true and predicted masks.

For the first N eval examples of a run it writes `<output>/report/<name>.png`
(image | true mask | predicted mask | overlay, at model resolution, scaled x2)
and `index.html` with the IoU table and those pictures. Predictions come from
the trained model's `serving_default` signature on the raw eval tf.Examples,
i.e. exactly what the Evaluator scored.
"""
import html
import os
from typing import Any, Dict, List, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from components.trainer import export
from components import features
from components.transform import module as transform
from pipeline.tools import predict

REPORT_DIR = 'report'
_SCALE = 2
# Display colours per class id: pet, background, border.
_PALETTE = np.array([(0, 200, 0), (40, 40, 40), (255, 220, 0)], np.uint8)


def _eval_examples(examples_uri: str, count: int) -> List[bytes]:
  files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, 'Split-eval', '*')))
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').take(count)
  return [record.numpy() for record in dataset]


def _panel(image_bytes: bytes, mask_bytes: bytes, predicted: np.ndarray) -> Image.Image:
  """image | true mask | predicted mask | overlay, side by side."""
  image = transform.decode_image(image_bytes).numpy()
  truth = transform.decode_mask(mask_bytes).numpy()[..., 0]
  tiles = [image, _PALETTE[truth], _PALETTE[predicted],
           predict.overlay(image, predicted)]
  strip = Image.fromarray(np.concatenate(tiles, axis=1))
  return strip.resize((strip.width * _SCALE, strip.height * _SCALE), Image.NEAREST)


def write_report(summary: Dict[str, Any], output_dir: str, num_images: int) -> str:
  """Writes the report for a run summary; returns the index.html path."""
  report_dir = os.path.join(output_dir, REPORT_DIR)
  tf.io.gfile.makedirs(report_dir)
  model = tf.saved_model.load(os.path.join(summary['model']['uri'], 'Format-Serving'))
  serialized = _eval_examples(summary['examples_uri'], num_images)
  predicted = model.signatures[export.SERVING_SIGNATURE](
      examples=tf.constant(serialized))[features.CLASS_MASK_KEY].numpy()
  rows = []
  for index, (record, mask) in enumerate(zip(serialized, predicted)):
    example = tf.train.Example.FromString(record).features.feature
    name = example[features.FILE_NAME_KEY].bytes_list.value[0].decode(
        errors='replace')
    # Files are numbered: no name from a list file ever becomes part of a path.
    picture = f'eval_{index:04d}.png'
    _panel(example[features.IMAGE_KEY].bytes_list.value[0],
           example[features.MASK_KEY].bytes_list.value[0],
           mask).save(os.path.join(report_dir, picture))
    rows.append((picture, name))
  index = os.path.join(report_dir, 'index.html')
  with tf.io.gfile.GFile(index, 'w') as f:
    f.write(_html(summary, rows))
  return index


def _html(summary: Dict[str, Any], names: List[Tuple[str, str]]) -> str:
  base = summary.get('baseline_metrics') or {}
  metric_rows = ''.join(
      f'<tr><td>{html.escape(n)}</td><td>{v:.4f}</td>'
      f'<td>{"" if n not in base else f"{base[n]:.4f}"}</td></tr>'
      for n, v in sorted(summary['metrics'].items()))
  pictures = ''.join(
      f'<figure><img src="{picture}" alt="{html.escape(n)}">'
      f'<figcaption>{html.escape(n)}</figcaption></figure>'
      for picture, n in names)
  verdict = 'blessed' if summary['blessed'] else 'not blessed'
  failed = ''.join(f'<li>{html.escape(c)}</li>' for c in summary['failed_checks'])
  return f'''<!doctype html>
<html><head><meta charset="utf-8"><title>Pet segmentation: evaluation</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 10px;text-align:right}}
figure{{margin:8px 0}} figcaption{{font-size:small}}</style></head><body>
<h1>Evaluation of run {html.escape(summary['run_id'])}</h1>
<p>Model {verdict}; eval examples: {summary['examples'].get('eval')}.</p>
<ul>{failed}</ul>
<table><tr><th>metric</th><th>candidate</th><th>baseline</th></tr>{metric_rows}</table>
<p>Each row: image | true mask | predicted mask | overlay (128&times;128, shown &times;{_SCALE});
green = pet, dark = background, yellow = border.</p>
{pictures}
</body></html>
'''
