"""--tune-trials: a TFX Tuner node searches on the train split; the Trainer takes the best."""
import json
import pathlib

import local_runner
from components.trainer import tuning
from tests import kit


def test_two_tiny_trials_choose_the_trainers_learning_rate(tmp_path):
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  root, out = tmp_path / 'pets', tmp_path / 'out'
  synthetic_pets.generate(root, num_trainval=10, num_test=4, seed=7,
                          min_size=128, max_size=136)
  code = local_runner.main(['--data-root', str(root), '--output-dir', str(out),
                            '--tune-trials', '2', '--epochs', '1',
                            '--batch-size', '4', '--report-images', '0',
                            *kit.RANDOM_ENCODER])
  summary = json.loads((out / 'run_summary.json').read_text())
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
