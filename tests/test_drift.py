"""Guards for unattended retraining: drift between spans, and infra validation.

One history on one output dir: span 1 trains and pushes; span 2, the same
generator's images made near-black, is stopped by the drift check (exit 1, the
brightness feature named); with --allow-drift the same span trains, the drift
recorded in the summary. (Another seed of the same generator passing the check
is asserted by tests/test_retraining.py, whose second span is exactly that.)
Then the same command again, everything up to the Evaluator reused: with a
too-tight latency budget, and with the trained model's variables truncated,
the infra validator refuses the model and nothing is pushed.
"""
import contextlib
import io
import json
import pathlib

import numpy as np
from PIL import Image
import pytest

import local_runner
from pipeline.tools import synthetic_pets
from tests import kit

ARGS = kit.RANDOM_ENCODER + ['--spans', '--epochs', '1', '--batch-size', '4',
                             '--report-images', '0', '--max-regression', '1.0']


def _span(root: pathlib.Path, span: int, seed: int, darken: float = 1.0) -> None:
  folder = root / f'span-{span}'
  synthetic_pets.generate(folder, num_trainval=12, num_test=4, seed=seed,
                          min_size=128, max_size=140)
  if darken != 1.0:  # a camera, or a batch, that delivers near-black images
    for path in (folder / 'images').iterdir():
      pixels = np.asarray(Image.open(path).convert('RGB'), np.float32)
      Image.fromarray((pixels * darken).astype(np.uint8)).save(path, 'JPEG', quality=95)


def _summary(out: pathlib.Path) -> dict:
  return json.loads((out / 'run_summary.json').read_text())


@pytest.fixture(scope='module')
def history(tmp_path_factory):
  root = tmp_path_factory.mktemp('drift_drops')
  out = tmp_path_factory.mktemp('drift_out')
  command = ['--data-root', str(root), '--output-dir', str(out)] + ARGS
  runs = {}
  _span(root, 1, seed=1)
  runs['first'] = (local_runner.main(command), _summary(out))
  _span(root, 2, seed=2, darken=0.05)
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    runs['dark'] = (local_runner.main(command), _summary(out))
  runs['dark_stderr'] = stderr.getvalue()
  # Allowed, with slice bounds too (species slices of 4 eval images are
  # reported, never gated with the default --min-slice-size 10). First with a
  # too-tight latency budget: trained and blessed, refused by infra validation.
  allowed = command + ['--allow-drift', '--slice-threshold', 'species:mean_iou=0.99',
                       '--require-blessing']
  runs['slow'] = (local_runner.main(allowed + ['--infra-latency-budget-ms', '0.001']),
                  _summary(out))
  # The same model with its variables cut in half (everything up to the
  # Evaluator reused): refused again, for not loading.
  model = pathlib.Path(runs['slow'][1]['model']['uri'], 'Format-Serving')
  variables = next((model / 'variables').glob('variables.data-*'))
  intact = variables.read_bytes()
  variables.write_bytes(intact[:len(intact) // 2])
  runs['broken'] = (local_runner.main(allowed + ['--infra-examples', '3']),
                    _summary(out))
  variables.write_bytes(intact)
  runs['serving_before'] = sorted(p.name for p in (out / 'serving_model').iterdir())
  # Intact and within the default budget: pushed. The refused model never
  # became the baseline (only pushed models do), so it is not "its own
  # baseline" now.
  runs['allowed'] = (local_runner.main(allowed), _summary(out))
  runs['serving'] = sorted(p.name for p in (out / 'serving_model').iterdir())
  return {'root': root, 'out': out, 'command': command, **runs}


def test_first_span_has_no_baseline_and_trains(history):
  code, first = history['first']
  assert code == 0 and first['pushed_model']
  assert first['drift'] == {'baseline_statistics': None, 'baseline_span': None,
                            'drifted': [], 'divergence': {}, 'not_compared': [],
                            'allowed': False}


def test_near_black_span_stops_before_transform(history):
  code, dark = history['dark']
  assert code == local_runner.EXIT_FAILED
  assert dark['drift']['baseline_span'] == 1
  drifted = {line.split(':')[0] for line in dark['drift']['drifted']}
  assert 'brightness' in drifted
  assert dark['drift']['divergence']['brightness'] > 0.9
  assert 'data drift' in dark['error'] and 'brightness' in dark['error']
  last = history['dark_stderr'].strip().splitlines()[-1]
  assert last.startswith('error: pipeline failed: DataDriftError: data drift')
  assert 'brightness' in last
  states = {n: c['state'] for n, c in dark['components'].items()}
  assert states['DataValidationGate'] == 'FAILED'
  assert 'Transform' not in states and 'Trainer' not in states
  assert dark['pushed_model'] is None


def test_allow_drift_trains_and_records_the_drift(history):
  # The first --allow-drift run trained span 2 with the drift recorded.
  trained = history['slow'][1]
  assert trained['components']['Trainer']['state'] == 'COMPLETE'
  assert trained['drift']['allowed'] is True and trained['drift']['baseline_span'] == 1
  assert 'brightness' in {line.split(':')[0] for line in trained['drift']['drifted']}
  code, allowed = history['allowed']
  assert code == 0
  assert allowed['examples']['span'] == 2
  # Span 2 has been trained on since: it is its own drift baseline now.
  assert allowed['drift']['baseline_span'] == 2 and allowed['drift']['drifted'] == []
  # Compared with span 1's model, the one still served.
  evaluator = kit.read_run(history['out'], allowed['run_id']).nodes['Evaluator']
  assert evaluator.inputs['baseline_model'][0].uri == history['first'][1]['model']['uri']
  # Small slices: reported with their size, below their bound, but not gated:
  # the model is blessed and pushed all the same.
  assert allowed['blessed'] and allowed['pushed_model']
  rows = [c for c in allowed['checks'] if c['slice']]
  assert rows and all(not c['gated'] and not c['passed'] for c in rows)
  assert not any(c.startswith('species=') for c in allowed['failed_checks'])
  assert {c['slice'] for c in rows} == {
      f'species:{s}' for s in allowed['metrics_by_slice']['species']}
  assert all(v['num_examples'] < 10
             for v in allowed['metrics_by_slice']['species'].values())


def test_healthy_model_passes_infra_validation(history):
  infra = history['allowed'][1]['infra_validation']
  assert infra['blessed'] is True and infra['reason'] is None
  timings = infra['measurements']['signatures']
  assert set(timings) >= {'serving_default', 'serving_image_bytes'}


def _not_pushed_because(run, history, reason):
  code, summary = run
  assert code == local_runner.EXIT_NOT_BLESSED  # --require-blessing
  states = {n: c['state'] for n, c in summary['components'].items()}
  assert states['InfraValidator'] == states['Pusher'] == 'COMPLETE'
  assert summary['blessed'] is True  # by the Evaluator: only serving failed
  assert summary['infra_validation']['blessed'] is False
  assert reason in summary['infra_validation']['reason']
  assert summary['pushed_model'] is None


def test_too_tight_latency_budget_blocks_the_push(history):
  _not_pushed_because(history['slow'], history, 'over the 0.001 ms budget')


def test_broken_export_is_not_pushed(history):
  _not_pushed_because(history['broken'], history, 'loading the SavedModel failed')
  states = {n: c['state'] for n, c in history['broken'][1]['components'].items()}
  assert states['Trainer'] == states['Evaluator'] == 'CACHED'
  # Only span 1's model was pushed before the intact model passed.
  assert len(history['serving_before']) == 1
  assert len(history['serving']) == 2


def test_a_feature_the_baseline_lacks_is_not_compared_not_drifted(tmp_path):
  """An output dir from before the descriptors: TFX reports a missing
  comparison as an anomaly; the gate must not stop the run for it."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top
  from components.data_gate import component  # pylint: disable=g-import-not-at-top
  anomalies = anomalies_pb2.Anomalies()
  missing = anomalies.anomaly_info['megapixels'].reason.add()
  missing.type = anomalies_pb2.AnomalyInfo.STATS_NOT_AVAILABLE
  high = anomalies.anomaly_info['brightness'].reason.add()
  high.type = anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
  high.description = 'divergence 0.9 above 0.5'
  folder = tmp_path / 'SplitPair-train_train'
  folder.mkdir()
  (folder / 'SchemaDiff.pb').write_bytes(anomalies.SerializeToString())
  found = component.read_drift(str(tmp_path), ['train_train'])
  assert found['drifted'] == ['brightness: divergence 0.9 above 0.5']
  assert found['not_compared'] == ['megapixels']
