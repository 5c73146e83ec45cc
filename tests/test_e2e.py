"""End to end: LocalDagRunner on tiny synthetic pets, twice on the same output dir."""
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components import features
from components.transform import module as transform
from tests.conftest import E2E_TEST, E2E_TRAIN, NODES
from tests.kit import node_outputs


def _count_records(split_dir: str) -> int:
  files = tf.io.gfile.glob(os.path.join(split_dir, '*'))
  return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))


def test_first_run_executes_every_component_and_pushes(e2e):
  first = e2e['first']
  assert e2e['first_code'] == 0
  assert set(first['components']) == NODES
  assert {c['state'] for c in first['components'].values()} == {'COMPLETE'}
  assert first['blessed'] is True
  assert first['baseline_metrics'] is None  # nothing blessed before
  pushed = first['pushed_model']
  assert pushed.startswith(str(e2e['out'] / 'serving_model') + os.sep)
  assert os.path.basename(pushed).isdigit()  # TF-Serving version directory
  loaded = tf.saved_model.load(pushed)
  assert {'serving_default', 'transform_features'} <= set(loaded.signatures)


def test_summary_matches_artifacts(e2e):
  first, out = e2e['first'], e2e['out']
  assert first['examples'] == {'train': E2E_TRAIN, 'eval': E2E_TEST, 'rejected': 0,
                               'span': 0}
  examples = node_outputs(out, first['run_id'], 'PetExampleGen', 'examples')[0]
  assert _count_records(os.path.join(examples.uri, 'Split-train')) == E2E_TRAIN
  assert _count_records(os.path.join(examples.uri, 'Split-eval')) == E2E_TEST
  # Metrics are TFMA's own numbers for this run's evaluation artifact.
  evaluation = node_outputs(out, first['run_id'], 'Evaluator', 'evaluation')[0]
  tfma_values = {kv.key.name: kv.value.double_value.value
                 for m in tfma.load_metrics(evaluation.uri)
                 for kv in m.metric_keys_and_values if not kv.key.is_diff}
  assert first['metrics']['mean_iou'] == pytest.approx(tfma_values['mean_iou'])
  assert set(first['metrics']) >= {'mean_iou', 'iou_pet', 'iou_background',
                                   'iou_border', 'pixel_accuracy'}
  blessing = node_outputs(out, first['run_id'], 'Evaluator', 'blessing')[0]
  assert os.path.exists(os.path.join(blessing.uri, 'BLESSED'))
  model = node_outputs(out, first['run_id'], 'Trainer', 'model')[0]
  assert first['model']['uri'] == model.uri
  assert first['model']['trainable_params'] + first['model']['frozen_params'] == 6504227
  assert os.path.isfile(os.path.join(model.uri, 'model_report.txt'))


def test_mean_iou_beats_all_background(e2e, synthetic_root):
  # The trivial predictor says "background" everywhere: IoU(background) is the
  # background pixel fraction, the other two IoUs are 0.
  names = [line.split()[0] for line in
           (synthetic_root / 'annotations' / 'test.txt').read_text().splitlines()
           if line and not line.startswith('#')]
  masks = np.stack([transform.decode_mask(tf.io.read_file(
      str(synthetic_root / 'annotations' / 'trimaps' / f'{n}.png'))).numpy()
                    for n in names])
  trivial = np.mean(masks == features.BACKGROUND) / features.NUM_CLASSES
  mean_iou = e2e['first']['metrics']['mean_iou']
  assert mean_iou > trivial + 0.05, (mean_iou, trivial)


def test_unreachable_bound_blocks_push_and_keeps_earlier_model(e2e):
  second = e2e['second']
  assert e2e['second_code'] == 3  # --require-blessing and not blessed
  assert second['blessed'] is False
  assert second['pushed_model'] is None
  assert any(c.startswith('mean_iou') for c in second['failed_checks'])
  # The first run's blessed model is the baseline the second run compared with.
  assert second['baseline_metrics'] is not None
  assert set(second['baseline_metrics']) >= {'mean_iou'}
  # Nothing new under serving_model/, and the earlier model is byte-identical.
  assert e2e['serving_after_second'] == e2e['serving_after_first']
  assert e2e['serving_after_first']  # there was a pushed model to protect


def test_report_pictures_eval_images(e2e):
  report = e2e['first']['report']
  assert report == str(e2e['out'] / 'report' / 'index.html')
  page = open(report).read()
  pictures = sorted((e2e['out'] / 'report').glob('*.png'))
  assert len(pictures) == 8  # the CLI default
  for picture in pictures:
    assert f'src="{picture.name}"' in page
    width, height = Image.open(picture).size
    assert (width, height) == (4 * 128 * 2, 128 * 2)  # 4 panels, shown x2
  assert f"{e2e['first']['metrics']['mean_iou']:.4f}" in page
