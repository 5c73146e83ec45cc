"""Shared fixtures: tiny data sets built once, and one end-to-end pipeline run per session.

Importing TF/TFX costs ~20 s, so the whole suite runs in one pytest process and
the expensive things (synthetic data, the LocalDagRunner runs) are session-scoped.
"""
import json
import os
import pathlib

import pytest

from tests.kit import RANDOM_ENCODER, REAL_SAMPLE, tree_digest

# The scheduled-retraining history (three runs) shared by the retraining,
# lineage and model card tests.
pytest_plugins = ['tests.retraining_fixture']

# End-to-end run settings: small, but enough steps (48 images / batch 4 x 8
# epochs) for a randomly initialised U-Net to beat the all-background predictor.
E2E_TRAIN, E2E_TEST = 48, 16
E2E_ARGS = ['--epochs', '8', '--batch-size', '4'] + RANDOM_ENCODER
NODES = {'PetExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
         'DataValidationGate', 'TrainedStatisticsResolver', 'DriftValidator',
         'Transform', 'Trainer', 'LatestBlessedModelResolver', 'Evaluator',
         'InfraValidator', 'Pusher'}


@pytest.fixture(scope='session', autouse=True)
def _no_mysql_metadata_from_the_environment():
  """A developer's exported MLMD_MYSQL_* would send every run of the suite to
  their server (the runs here expect <output-dir>/metadata.db): hide them."""
  from pipeline import metadata  # pylint: disable=g-import-not-at-top
  saved = {name: os.environ.pop(name) for name in metadata.ENV_VARS
           if name in os.environ}
  yield
  os.environ.update(saved)


@pytest.fixture(scope='session')
def real_sample() -> pathlib.Path:
  assert (REAL_SAMPLE / 'annotations' / 'trainval.txt').is_file(), (
      f'the real Oxford-IIIT Pet sample is expected at {REAL_SAMPLE}')
  return REAL_SAMPLE


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> pathlib.Path:
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('synthetic_pets')
  synthetic_pets.generate(root, num_trainval=E2E_TRAIN, num_test=E2E_TEST,
                          seed=0, min_size=128, max_size=160)
  return root


@pytest.fixture(scope='session')
def e2e(synthetic_root, tmp_path_factory) -> dict:
  """Two runs on one output dir: a normal one, then one with an unreachable bound."""
  import local_runner  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp('e2e_output')
  common = ['--data-root', str(synthetic_root), '--output-dir', str(out)] + E2E_ARGS
  first_code = local_runner.main(common)
  first = json.loads((out / 'run_summary.json').read_text())
  serving_after_first = tree_digest(out / 'serving_model')
  # Every species slice must reach an unreachable bound too (slices of one
  # eval image are large enough here).
  second_code = local_runner.main(common + [
      '--min-mean-iou', '1.0', '--require-blessing',
      '--slice-threshold', 'species:mean_iou=0.999', '--min-slice-size', '1'])
  second = json.loads((out / 'run_summary.json').read_text())
  return {'out': out, 'first_code': first_code, 'first': first,
          'serving_after_first': serving_after_first,
          'second_code': second_code, 'second': second,
          'serving_after_second': tree_digest(out / 'serving_model')}
