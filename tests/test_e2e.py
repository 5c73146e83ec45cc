"""End to end: LocalDagRunner on tiny synthetic pets, twice on the same output dir."""
import os

import numpy as np
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
  assert first['infra_validation']['blessed'] is True  # served in a fresh process
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
                 if not m.slice_key.single_slice_keys  # overall
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
  # The species bound failed on every species slice, and TFMA says so.
  species = sorted(second['metrics_by_slice']['species'])
  assert species == ['cat', 'dog']
  for name in species:
    assert any(c.startswith(f'species={name}: mean_iou') for c in second['failed_checks'])
    row, = [c for c in second['checks'] if c['slice'] == f'species:{name}']
    assert (row['threshold'], row['gated'], row['passed']) == (0.999, True, False)
  # Breeds have no bound: never a failed check.
  assert not any(c.startswith('breed=') for c in second['failed_checks'])
  overall = {c['kind']: c for c in second['checks'] if c['slice'] is None
             and c['metric'] == 'mean_iou'}
  assert overall['lower_bound']['passed'] is False
  assert overall['max_regression']['baseline'] == second['baseline_metrics']['mean_iou']
  # The first run's blessed model is the baseline the second run compared with.
  assert second['baseline_metrics'] is not None
  assert set(second['baseline_metrics']) >= {'mean_iou'}
  # Nothing new under serving_model/, and the earlier model is byte-identical.
  assert e2e['serving_after_second'] == e2e['serving_after_first']
  assert e2e['serving_after_first']  # there was a pushed model to protect


def test_report_is_written_for_the_run(e2e):
  # Its content: tests/test_report.py.
  assert e2e['first']['report'] == str(e2e['out'] / 'report' / 'index.html')


def test_metrics_per_slice_match_a_hand_computation(e2e):
  """TFMA's per-species and per-breed metrics, recomputed from the model's own
  predictions on the eval split, grouped by the examples' features."""
  from components.trainer import export  # pylint: disable=g-import-not-at-top
  from tests.kit import split_records  # pylint: disable=g-import-not-at-top
  first = e2e['first']
  records = split_records(os.path.join(first['examples_uri'], 'Split-eval'))
  model = tf.saved_model.load(os.path.join(first['model']['uri'], 'Format-Serving'))
  predicted = model.signatures[export.SERVING_SIGNATURE](
      examples=tf.constant(records))[features.CLASS_MASK_KEY].numpy()
  by_slice = {}
  for record, mask in zip(records, predicted):
    example = tf.train.Example.FromString(record).features.feature
    truth = transform.decode_mask(example[features.MASK_KEY].bytes_list.value[0]).numpy()[..., 0]
    confusion = np.zeros((3, 3), np.int64)
    np.add.at(confusion, (truth.ravel(), mask.ravel()), 1)
    species = features.SPECIES_NAMES[example[features.SPECIES_KEY].int64_list.value[0]]
    breed = example[features.BREED_KEY].bytes_list.value[0].decode()
    assert example[features.FILE_NAME_KEY].bytes_list.value[0].decode().startswith(breed + '_')
    for key in (('species', species), ('breed', breed)):
      total, count = by_slice.get(key, (0, 0))
      by_slice[key] = (total + confusion, count + 1)
  reported = first['metrics_by_slice']
  assert {('species', s) for s in reported['species']} | {
      ('breed', b) for b in reported['breed']} == set(by_slice)
  assert len(reported['species']) == 2  # cats and dogs in the eval split
  for (column, name), (confusion, count) in by_slice.items():
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    values = reported[column][name]
    assert values['num_examples'] == count
    assert values['mean_iou'] == pytest.approx(np.mean(tp[present] / union[present]), abs=1e-5)
    assert values['pixel_accuracy'] == pytest.approx(tp.sum() / confusion.sum(), abs=1e-5)
    for class_id, class_name in enumerate(features.CLASS_NAMES):
      expected = tp[class_id] / union[class_id] if union[class_id] else 0.0
      assert values[f'iou_{class_name}'] == pytest.approx(expected, abs=1e-5)
