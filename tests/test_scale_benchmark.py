"""benchmarks/scale_benchmark.py at a tiny size, so that it cannot rot.

The benchmark itself (1/8, 1/2 and the full 7,349 pairs) takes most of an hour;
here one size of 30 full-size-shaped pairs runs through the same code: data,
the pipeline as a subprocess, RSS sampling, ML Metadata windows, disk, the
plain-loop comparison, the table and the target check.
"""
import json
import subprocess
import sys

import keras

from tests.kit import REPO


def test_scale_benchmark_runs_at_a_tiny_size(tmp_path):
  weights = tmp_path / 'encoder.weights.h5'  # frozen decoder-only training is quick
  keras.applications.MobileNetV2(input_shape=[128, 128, 3], include_top=False,
                                 weights=None).save_weights(weights)
  results = tmp_path / 'results.json'
  proc = subprocess.run(
      [sys.executable, str(REPO / 'benchmarks' / 'scale_benchmark.py'),
       '--fractions', '0.002', '--work-dir', str(tmp_path / 'work'),
       '--encoder-weights', str(weights), '--json', str(results),
       '--', '--batch-size', '8'],
      cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  size = json.loads(results.read_text())['0.002']
  assert size['pairs'] == 14  # 7 trainval + 7 test
  components = size['components']
  assert {'PetExampleGen', 'StatisticsGen', 'Transform', 'Trainer', 'Evaluator',
          'Pusher'} <= set(components)
  assert all(c['seconds'] > 0 for n, c in components.items() if n in (
      'PetExampleGen', 'Transform', 'Trainer', 'Evaluator'))
  assert components['Transform']['disk'] > 14 * 10_000  # uint8 examples, GZIP
  assert components['Trainer']['peak_rss'] > 500e6  # TF is loaded by then
  assert size['peak_rss'] >= max(c['peak_rss'] for c in components.values())
  assert 0 < size['plain_loop_seconds_per_pair'] < 1
  lines = proc.stdout.splitlines()
  assert any(line.startswith('Transform | ') for line in lines), proc.stdout
  assert any(line.startswith('Transform ms/pair vs plain loop') for line in lines)
  assert any(line.startswith('targets: ') for line in lines)
