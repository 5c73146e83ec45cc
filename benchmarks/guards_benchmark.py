"""What the two retraining guards cost, side by side with the run they guard.

Runs the demo's pipeline once (`make demo`'s data and settings: 160 + 48
synthetic pets, pretrained frozen encoder + 3 fine-tuned blocks, 10 epochs) as a
subprocess, then reads each component's seconds from its run summary (ML
Metadata's execution windows) and prints the guards' share of the run's wall
time:
- drift: TrainedStatisticsResolver + DriftValidator + DataValidationGate, plus
  the descriptors the ExampleGen computes per pair (`descriptors.describe`,
  timed here on the same data next to the rest of `records.make_record`);
- infra: InfraValidator (a fresh process loading and serving the SavedModel).

  python benchmarks/guards_benchmark.py [--work-dir DIR] [-- extra local_runner flags]

Target (issue 15): both guards together under 10 % of the run's wall time.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from components.example_gen import descriptors, records
from pipeline.tools import synthetic_pets

WEIGHTS = REPO / '.cache' / 'encoders' / 'mobilenet_v2_stanford_dogs_128_no_top.weights.h5'
DEMO_ARGS = ['--epochs', '10', '--batch-size', '8', '--encoder-weights', str(WEIGHTS),
             '--freeze-encoder', '--fine-tune-blocks', '3', '--fine-tune-epochs', '5',
             '--min-mean-iou', '0.5']
DRIFT_NODES = ('TrainedStatisticsResolver', 'DriftValidator', 'DataValidationGate')
INFRA_NODES = ('InfraValidator',)
TARGET = 0.10


def descriptor_seconds(root: pathlib.Path) -> tuple:
  """(seconds in `describe`, in the rest of make_record, pairs) over every pair."""
  describe, total, pairs = descriptors.describe, 0.0, 0
  spent = [0.0]

  def timed(*args):
    start = time.perf_counter()
    try:
      return describe(*args)
    finally:
      spent[0] += time.perf_counter() - start

  descriptors.describe = timed
  try:
    for list_file in ('trainval.txt', 'test.txt'):
      for line in (root / 'annotations' / list_file).read_text().splitlines():
        columns = records.parse_list_line(line)
        if columns:
          start = time.perf_counter()
          records.make_record(str(root), columns)
          total += time.perf_counter() - start
          pairs += 1
  finally:
    descriptors.describe = describe
  return spent[0], total - spent[0], pairs


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--work-dir', default=None)
  parser.add_argument('runner_args', nargs='*', help='after --: more local_runner flags')
  args = parser.parse_args(argv)
  work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix='guards-'))
  data, out = work / 'data', work / 'out'
  if not (data / 'annotations' / 'test.txt').exists():
    synthetic_pets.generate(data, num_trainval=160, num_test=48)
  start = time.perf_counter()
  code = subprocess.run([sys.executable, str(REPO / 'local_runner.py'), '--data-root',
                         str(data), '--output-dir', str(out), *DEMO_ARGS,
                         *args.runner_args], check=False).returncode
  wall = time.perf_counter() - start
  summary = json.loads((out / 'run_summary.json').read_text())
  seconds = {n: c['seconds'] for n, c in summary['components'].items()}
  in_describe, rest, pairs = descriptor_seconds(data)
  drift = sum(seconds.get(n, 0.0) for n in DRIFT_NODES) + in_describe
  infra = sum(seconds.get(n, 0.0) for n in INFRA_NODES)
  print(f'run: exit {code}, {wall:.1f} s wall (components: '
        f'{sum(seconds.values()):.1f} s), mean IoU {summary["metrics"].get("mean_iou")}')
  print(f'drift check: {drift:.1f} s = {drift / wall:.1%} of the run '
        f'(nodes {drift - in_describe:.1f} s; descriptors {in_describe * 1000 / pairs:.2f} ms '
        f'a pair vs {rest * 1000 / pairs:.2f} ms for the rest of make_record)')
  print(f'infra validation: {infra:.1f} s = {infra / wall:.1%} of the run')
  share = (drift + infra) / wall
  print(f'both guards: {drift + infra:.1f} s = {share:.1%} of the run '
        f'(target < {TARGET:.0%}): {"met" if share < TARGET else "MISSED"}')
  return 0 if code == 0 and share < TARGET else 1


if __name__ == '__main__':
  sys.exit(main())
