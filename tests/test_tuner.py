"""--tune-trials: a TFX Tuner node searches on the train split; the Trainer takes the best.

The run also has a file where its report folder would go: a report problem is
a warning in the summary, never a failed run (one pipeline run for both).
"""
import json
import os
import pathlib

import pytest

import local_runner
from components.trainer import tuning
from tests import kit


@pytest.fixture(scope='module')
def tuned_run(tmp_path_factory):
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  tmp_path = tmp_path_factory.mktemp('tuner')
  root, out = tmp_path / 'pets', tmp_path / 'out'
  synthetic_pets.generate(root, num_trainval=10, num_test=4, seed=7,
                          min_size=128, max_size=136)
  out.mkdir()
  (out / 'report').write_text('a file where the report folder would go')
  code = local_runner.main(['--data-root', str(root), '--output-dir', str(out),
                            '--tune-trials', '2', '--epochs', '1',
                            '--batch-size', '4', '--report-images', '2',
                            *kit.RANDOM_ENCODER, *kit.NO_INFRA])
  return code, json.loads((out / 'run_summary.json').read_text()), out


def test_two_tiny_trials_choose_the_trainers_learning_rate(tuned_run):
  code, summary, out = tuned_run
  assert code == 0, summary.get('error')
  assert summary['components']['Tuner']['state'] == 'COMPLETE'
  chosen = summary['hyperparameters']
  assert set(chosen) == {tuning.LEARNING_RATE}  # no fine-tuning phase to tune
  assert 1e-4 <= chosen[tuning.LEARNING_RATE] <= 1e-2
  report = json.loads(
      (pathlib.Path(summary['model']['uri']) / 'model_report.json').read_text())
  assert report['training']['learning_rate'] == chosen[tuning.LEARNING_RATE]
  run = kit.read_run(out, summary['run_id'])
  best = run.output('Tuner', 'best_hyperparameters')
  assert [a.id for a in run.nodes['Trainer'].inputs['hyperparameters']] == [best.id]
  trials = json.loads((pathlib.Path(best.uri) / 'best_hyperparameters.txt').read_text())
  assert trials['values'][tuning.LEARNING_RATE] == chosen[tuning.LEARNING_RATE]


def test_a_report_problem_is_a_warning_not_a_failure(tuned_run):
  code, summary, _ = tuned_run
  assert code == 0
  assert summary['pushed_model'] and os.path.isdir(summary['pushed_model'])
  assert summary['report'] is None
  assert len(summary['warnings']) == 1
  assert summary['warnings'][0].startswith('report not written: ')
