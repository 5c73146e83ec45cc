"""Scheduled retraining: span 1 pushes, span 2 arrives, the next run compares against run 1's model."""
import json
import os

import local_runner
from tests import kit
from pipeline.tools import synthetic_pets

# The cron entry point: the same command every time; exit 0 = blessed and pushed.
ARGS = kit.RANDOM_ENCODER + ['--spans', '--epochs', '1', '--batch-size', '4', '--report-images', '0',
        '--require-blessing']


def _span(root, span, seed):
  synthetic_pets.generate(root / f'span-{span}', num_trainval=12, num_test=4,
                          seed=seed, min_size=128, max_size=140)


def test_retraining_loop(tmp_path):
  root, out = tmp_path / 'drops', tmp_path / 'out'
  command = ['--data-root', str(root), '--output-dir', str(out)] + ARGS
  _span(root, 1, seed=1)
  assert local_runner.main(command) == 0
  first = json.loads((out / 'run_summary.json').read_text())
  assert first['examples']['span'] == 1 and first['pushed_model']

  # Nothing new: the scheduled run reuses every result up to the model, and
  # the same model (now its own baseline) is not pushed again.
  local_runner.main(command)
  idle = json.loads((out / 'run_summary.json').read_text())
  states = {n: c['state'] for n, c in idle['components'].items()}
  for node in ('PetExampleGen', 'StatisticsGen', 'ImportSchemaGen',
               'ExampleValidator', 'DataValidationGate', 'Transform', 'Trainer'):
    assert states[node] == 'CACHED', states
  assert idle['model']['uri'] == first['model']['uri']
  assert idle['pushed_model'] is None
  assert os.listdir(out / 'serving_model') == [os.path.basename(first['pushed_model'])]

  _span(root, 2, seed=2)
  code = local_runner.main(command)
  second = json.loads((out / 'run_summary.json').read_text())
  assert second['examples']['span'] == 2
  states = {n: c['state'] for n, c in second['components'].items()}
  assert states['ImportSchemaGen'] == 'CACHED'  # inputs unchanged
  assert states['Trainer'] == 'COMPLETE' and states['Evaluator'] == 'COMPLETE'

  # The baseline is exactly run 1's pushed model.
  evaluator = kit.read_run(out, second['run_id']).nodes['Evaluator']
  baseline = evaluator.inputs['baseline_model'][0]
  assert baseline.uri == first['model']['uri']
  assert second['baseline_metrics'] is not None

  # Pushed only if not worse than the baseline (--max-regression 0).
  not_worse = second['metrics']['mean_iou'] >= second['baseline_metrics']['mean_iou']
  versions = sorted(os.listdir(out / 'serving_model'))
  assert second['blessed'] == not_worse
  assert code == (0 if not_worse else local_runner.EXIT_NOT_BLESSED)
  assert len(versions) == (2 if not_worse else 1)
  assert (second['pushed_model'] is not None) == not_worse
