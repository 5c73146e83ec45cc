"""The CLI's contract: exit codes and one-line reasons, never a traceback."""
import json
import subprocess
import sys

import pytest

import local_runner
from tests.kit import REPO


def _run_cli(*args):
  # A subprocess proves the real entry point: bad arguments are refused before
  # TF/TFX are imported, so these are quick.
  return subprocess.run([sys.executable, str(REPO / 'local_runner.py'), *args],
                        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize('args, reason', [
    (['--data-root', '/nonexistent/pets'], 'is not a directory'),
    (['--data-root', str(REPO)], 'not in the Oxford-IIIT Pet layout: missing'),
    (['--data-root', str(REPO), '--spans'], 'has no span-N/ folders'),
    (['--data-root', str(REPO), '--encoder-weights', 'none', '--freeze-encoder'],
     'learns nothing'),
    (['--data-root', str(REPO), '--encoder-weights', '/no/such.h5'], 'no such file'),
    (['--data-root', str(REPO), '--threshold', 'iou_pet'], 'expected METRIC=NUMBER'),
    (['--data-root', str(REPO), '--max-regression-for', 'iou_x=1'], 'unknown metric'),
    (['--data-root', str(REPO), '--epochs', '0'], 'at least 1'),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, reason):
  result = _run_cli(*args, '--output-dir', str(tmp_path / 'out'))
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert reason in lines[0]
  assert not (tmp_path / 'out').exists()


def test_unknown_threshold_metric_is_refused(tmp_path, synthetic_root, capsys):
  code = local_runner.main(['--data-root', str(synthetic_root), '--output-dir',
                            str(tmp_path / 'out'), '--threshold', 'iou_cat=0.5'])
  assert code == 2
  assert "unknown metric(s) ['iou_cat']" in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()


def test_per_metric_thresholds_reach_the_eval_config(tmp_path):
  from components.evaluator import eval_config as evaluation  # pylint: disable=g-import-not-at-top
  config, _ = local_runner.parse_config([
      '--data-root', str(tmp_path), '--output-dir', str(tmp_path),
      '--min-mean-iou', '0.4', '--threshold', 'iou_pet=0.5',
      '--max-regression', '0.01', '--max-regression-for', 'pixel_accuracy=0.02',
      '--slice-threshold', 'species:mean_iou=0.6',
      '--slice-threshold', 'breed:iou_pet=0.3'])
  eval_config = evaluation.create_eval_config(
      config.evaluation.lower_bounds(), config.evaluation.all_max_regressions(),
      config.evaluation.slice_lower_bounds())
  overall, by_feature = {}, {}
  for metric in eval_config.metrics_specs[0].metrics:
    for per_slice in metric.per_slice_thresholds:
      spec = per_slice.slicing_specs[0]
      target = (by_feature.setdefault(spec.feature_keys[0], {})
                if spec.feature_keys else overall)
      target[json.loads(metric.config)['name']] = per_slice.threshold
    assert not metric.HasField('threshold')  # it would gate every slice
  assert by_feature['species']['mean_iou'].value_threshold.lower_bound.value == 0.6
  assert by_feature['breed']['iou_pet'].value_threshold.lower_bound.value == 0.3
  assert set(by_feature['species']) == {'mean_iou'}
  thresholds = {n: overall.get(n, evaluation.tfma.MetricThreshold())
                for n in ('mean_iou', 'iou_pet', 'pixel_accuracy', 'iou_border')}
  assert thresholds['mean_iou'].value_threshold.lower_bound.value == 0.4
  assert thresholds['mean_iou'].change_threshold.absolute.value == -0.01
  assert thresholds['iou_pet'].value_threshold.lower_bound.value == 0.5
  assert not thresholds['iou_pet'].HasField('change_threshold')
  assert thresholds['pixel_accuracy'].change_threshold.absolute.value == -0.02
  assert not thresholds['pixel_accuracy'].HasField('value_threshold')
  assert not thresholds['iou_border'].HasField('value_threshold')


def test_slice_thresholds_gate_only_large_enough_slices():
  import collections  # pylint: disable=g-import-not-at-top
  from components.evaluator import eval_config as evaluation  # pylint: disable=g-import-not-at-top
  from components.evaluator import executor  # pylint: disable=g-import-not-at-top
  config = evaluation.create_eval_config(
      {'mean_iou': 0.1}, {}, {'species': {'mean_iou': 0.6}, 'breed': {'iou_pet': 0.5}})
  counts = {'species': collections.Counter({'1': 12, '2': 3}),
            'breed': collections.Counter({'Bengal': 2, 'beagle': 1})}
  narrowed = executor.gate_large_slices(config, counts, min_slice_size=10)
  specs = {json.loads(m.config)['name']: [
      dict(s.feature_values) for t in m.per_slice_thresholds for s in t.slicing_specs]
           for m in narrowed.metrics_specs[0].metrics}
  # Overall bound kept; species 1 (12 eval images) gated, species 2 (3) and
  # every breed too small: no threshold left for them.
  assert specs['mean_iou'] == [{}, {'species': '1'}]
  assert specs['iou_pet'] == []
  assert len(config.metrics_specs[0].metrics[0].per_slice_thresholds) == 2  # a copy


def test_bad_slice_threshold_is_a_usage_error(tmp_path, capsys):
  code = local_runner.main(['--data-root', str(tmp_path), '--output-dir',
                            str(tmp_path / 'out'), '--slice-threshold', 'colour:mean_iou=0.5'])
  assert code == 2
  assert "bad slice threshold 'colour:mean_iou'" in capsys.readouterr().err


def test_no_valid_examples_fails_with_reason(tmp_path, capsys):
  root = tmp_path / 'pets'
  (root / 'images').mkdir(parents=True)
  (root / 'annotations' / 'trimaps').mkdir(parents=True)
  for name in ('trainval', 'test'):
    (root / 'annotations' / f'{name}.txt').write_text('ghost_1 13 2 1\n')
  code = local_runner.main(['--data-root', str(root), '--output-dir',
                            str(tmp_path / 'out')])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1
  assert len(err) == 1 and 'no valid examples' in err[0], err
  summary = json.loads((tmp_path / 'out' / 'run_summary.json').read_text())
  assert 'no valid examples' in summary['error']
  assert summary['components']['PetExampleGen']['state'] == 'FAILED'
  assert 'Trainer' not in summary['components']
  assert summary['pushed_model'] is None
  # The reasons outlive the failed component's outputs, where the error points.
  assert summary['quarantine'].startswith(str(tmp_path / 'out' / 'quarantine'))
  assert summary['quarantine'] in err[0]
  assert [r['entry'] for r in summary['rejected_entries']] == ['ghost_1 13 2 1'] * 2
  assert all('missing file' in r['reason'] for r in summary['rejected_entries'])


def test_schema_anomalies_stop_training(tmp_path, capsys):
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'pets'
  synthetic_pets.generate(root, num_trainval=6, num_test=3, min_size=128,
                          max_size=140)
  # class_id 99 is outside the schema's int_domain [1, 37].
  listing = root / 'annotations' / 'trainval.txt'
  lines = listing.read_text().splitlines()
  first = next(i for i, l in enumerate(lines) if not l.startswith('#'))
  name = lines[first].split()[0]
  lines[first] = f'{name} 99 1 1'
  listing.write_text('\n'.join(lines) + '\n')
  code = local_runner.main(['--data-root', str(root), '--output-dir',
                            str(tmp_path / 'out')])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1
  assert len(err) == 1 and 'data validation failed' in err[0], err
  summary = json.loads((tmp_path / 'out' / 'run_summary.json').read_text())
  assert 'train: class_id:' in summary['error']
  states = {n: c['state'] for n, c in summary['components'].items()}
  assert states['ExampleValidator'] == 'COMPLETE'
  assert states['DataValidationGate'] == 'FAILED'
  assert not {'Transform', 'Trainer', 'Evaluator', 'Pusher'} & set(states)
  assert summary['examples']['train'] == 6  # ingested fine; the schema said no
