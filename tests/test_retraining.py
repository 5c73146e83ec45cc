"""Scheduled retraining: span 1 pushes, span 2 arrives, the next run compares against run 1's model.

The history is the session fixture `retraining` (tests/retraining_fixture.py),
shared with test_lineage.py and test_model_card.py.
"""
import os

import pytest

from tests import kit


def test_first_span_is_pushed(retraining):
  first = retraining['first']
  assert retraining['first_code'] == 0
  assert first['examples']['span'] == 1 and first['pushed_model']


def test_nothing_new_reuses_everything_and_pushes_nothing(retraining):
  # The scheduled run reuses every result up to the model, and the same model
  # (now its own baseline) is not pushed again.
  first, idle = retraining['first'], retraining['idle']
  states = {n: c['state'] for n, c in idle['components'].items()}
  for node in ('PetExampleGen', 'StatisticsGen', 'ImportSchemaGen',
               'ExampleValidator', 'Transform', 'Trainer'):
    assert states[node] == 'CACHED', states
  # Span 1 has been trained on since the first run: the drift check now has
  # it as its baseline (new inputs: the check and the gate run again) and
  # finds it identical to itself.
  assert states['DriftValidator'] == states['DataValidationGate'] == 'COMPLETE'
  assert idle['drift']['baseline_span'] == 1 and idle['drift']['drifted'] == []
  assert set(idle['drift']['divergence'].values()) == {0.0}
  assert idle['model']['uri'] == first['model']['uri']
  assert idle['pushed_model'] is None
  assert retraining['serving_after_idle'] == [os.path.basename(first['pushed_model'])]


def test_new_span_is_compared_with_the_first_runs_model(retraining):
  out, first, second = retraining['out'], retraining['first'], retraining['second']
  assert second['examples']['span'] == 2
  states = {n: c['state'] for n, c in second['components'].items()}
  assert states['ImportSchemaGen'] == 'CACHED'  # inputs unchanged
  assert states['Trainer'] == 'COMPLETE' and states['Evaluator'] == 'COMPLETE'
  # Another seed of the same generator is no drift (issue 15).
  assert second['drift']['baseline_span'] == 1 and second['drift']['drifted'] == []
  assert len(second['drift']['divergence']) == 6
  assert max(second['drift']['divergence'].values()) < 0.5

  # The baseline is exactly run 1's pushed model.
  evaluator = kit.read_run(out, second['run_id']).nodes['Evaluator']
  baseline = evaluator.inputs['baseline_model'][0]
  assert baseline.uri == first['model']['uri']
  assert second['baseline_metrics'] is not None

  # Blessed against the baseline within --max-regression 1.0 (always, so
  # that there are two pushes to read back) and pushed beside the first.
  regression = [c for c in second['checks']
                if c['kind'] == 'max_regression' and c['slice'] is None
                and c['metric'] == 'mean_iou']
  assert regression == [{
      'metric': 'mean_iou', 'slice': None, 'kind': 'max_regression',
      'threshold': 1.0, 'value': pytest.approx(second['metrics']['mean_iou']),
      'baseline': pytest.approx(second['baseline_metrics']['mean_iou']),
      'passed': True, 'gated': True}]
  assert second['blessed'] and retraining['second_code'] == 0
  versions = sorted(os.listdir(out / 'serving_model'))
  assert len(versions) == 2
  assert second['pushed_model'] == str(out / 'serving_model' / versions[-1])
