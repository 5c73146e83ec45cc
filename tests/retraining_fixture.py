"""The scheduled-retraining history, run once a session and shared (a pytest plugin,
loaded by tests/conftest.py's `pytest_plugins`).

Span 1 arrives and is pushed; a scheduled run finds nothing new; span 2 arrives
and the next run compares its model with run 1's, blessing and pushing it.
tests/test_retraining.py checks the history itself, test_lineage.py and
test_model_card.py what can be read back about its two pushes.
"""
import json
import os

import pytest

from tests import kit

# The cron entry point: the same command every time; exit 0 = blessed and pushed.
# --max-regression 1.0: span 2's model is pushed whether or not it beats run
# 1's (one epoch on 12 images decides that by chance), so there are always two
# pushes to read back; the comparison itself is still made and recorded.
ARGS = kit.RANDOM_ENCODER + ['--spans', '--epochs', '1', '--batch-size', '4',
                             '--report-images', '0', '--require-blessing',
                             '--max-regression', '1.0'] + kit.NO_INFRA


def add_span(root, span: int, seed: int) -> None:
  """A new drop of synthetic pets in <root>/span-<span>/."""
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  synthetic_pets.generate(root / f'span-{span}', num_trainval=12, num_test=4,
                          seed=seed, min_size=128, max_size=140)


@pytest.fixture(scope='session')
def retraining(tmp_path_factory) -> dict:
  """{'out', 'first', 'idle', 'second' (summaries), '<name>_code' (exit
  codes), 'serving_after_idle' (version folders), 'trainer_fingerprint'}."""
  # pylint: disable=g-import-not-at-top
  import local_runner
  from components import trainer as trainer_room
  from components.fingerprint import code_fingerprint
  # pylint: enable=g-import-not-at-top
  root = tmp_path_factory.mktemp('retraining_drops')
  out = tmp_path_factory.mktemp('retraining_out')
  command = ['--data-root', str(root), '--output-dir', str(out)] + ARGS
  history = {'out': out,
             'trainer_fingerprint': code_fingerprint(trainer_room.CODE)}

  def run(name):
    history[f'{name}_code'] = local_runner.main(command)
    history[name] = json.loads((out / 'run_summary.json').read_text())

  add_span(root, 1, seed=1)
  run('first')
  run('idle')
  history['serving_after_idle'] = sorted(os.listdir(out / 'serving_model'))
  add_span(root, 2, seed=2)
  run('second')
  return history
