"""The whole pipeline on the 49 real Oxford-IIIT Pet pairs, with Beam on 2 worker processes.

Tiny data, one epoch: no quality claim. It proves real files (including the
RGBA PNG named .jpg) go through every component, and that every Beam-based
component (ExampleGen, StatisticsGen, Transform, Evaluator) runs on
DirectRunner's multi-processing mode, as on a real multi-worker runner.
"""
import json
import pathlib

import pytest
import tensorflow as tf

import local_runner
from tests import kit
from tests.kit import RANDOM_ENCODER

MULTI_PROCESS = ['--beam-arg=--direct_running_mode=multi_processing',
                 '--beam-arg=--direct_num_workers=2']


@pytest.fixture(scope='module')
def real_run(real_sample, tmp_path_factory):
  out = tmp_path_factory.mktemp('real_sample_run')
  code = local_runner.main(['--data-root', str(real_sample), '--output-dir', str(out),
                            '--epochs', '1', '--batch-size', '8',
                            '--report-images', '2'] + MULTI_PROCESS + RANDOM_ENCODER)
  return code, json.loads((out / 'run_summary.json').read_text()), out


def test_real_sample_trains_and_evaluates(real_run):
  code, summary, _ = real_run
  assert code == 0, summary.get('error')
  assert summary['examples'] == {'train': 24, 'eval': 25, 'rejected': 0, 'span': 0}
  assert {c['state'] for c in summary['components'].values()} == {'COMPLETE'}
  for name in ('mean_iou', 'iou_pet', 'iou_background', 'iou_border', 'pixel_accuracy'):
    assert 0.0 <= summary['metrics'][name] <= 1.0
  # Mean IoU is the mean of the three per-class IoUs.
  per_class = [summary['metrics'][f'iou_{c}'] for c in ('pet', 'background', 'border')]
  assert summary['metrics']['mean_iou'] == pytest.approx(sum(per_class) / 3, abs=1e-6)
  assert summary['blessed'] and summary['pushed_model']


def test_transformed_real_photos_take_under_60_kb_each(real_run):
  """Issue 13: 8-bit pixels through Transform. Float pixels took ~160 KB an
  example (GZIP TFRecords as Transform writes them) on these photos."""
  _, summary, out = real_run
  run = kit.read_run(out, summary['run_id'])
  uri = pathlib.Path(run.output('Transform', 'transformed_examples').uri)
  files = list(uri.glob('Split-*/*.gz'))
  count = sum(1 for _ in tf.data.TFRecordDataset([str(f) for f in files],
                                                 compression_type='GZIP'))
  assert count == 49
  per_example = sum(f.stat().st_size for f in files) / count
  print(f'transformed real photos: {per_example / 1024:.1f} KB an example on disk')
  assert 30_000 < per_example <= 60_000
