"""Hostile or careless use of the CLI: one line and a clear exit status, never a
traceback; signals end a run with a summary; a report problem never fails a run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import local_runner
from tests.kit import RANDOM_ENCODER, REPO


def _cli(*args, **kwargs):
  return subprocess.run([sys.executable, str(REPO / 'local_runner.py'), *args],
                        capture_output=True, text=True, timeout=300, check=False,
                        **kwargs)


@pytest.mark.parametrize('args, reason', [
    (['--beam-arg=--direct_num_workers=two'], "invalid int value: 'two'"),
    (['--beam-arg=--direct_running_mode=fast'], "invalid choice: 'fast'"),
    (['--beam-arg=--direct_num_wrokers=2'], "unknown Beam option(s) ['--direct_num_wrokers=2']"),
    (['--threshold', 'iou_pet=nan'], 'must be a finite number within [0.0, 1.0], got nan'),
    (['--min-mean-iou', '-5'], '--min-mean-iou: must be a finite number within [0.0, 1.0]'),
    (['--max-regression-for', 'iou_pet=1.5'], 'within [0.0, 1.0], got 1.5'),
    (['--learning-rate', 'inf'], '--learning-rate: must be a finite number'),
])
def test_bad_values_exit_2_with_one_line(synthetic_root, tmp_path, args, reason):
  result = _cli('--data-root', str(synthetic_root), '--output-dir',
                str(tmp_path / 'out'), *args)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert reason in lines[0], lines[0]
  assert not (tmp_path / 'out').exists()


def test_unusable_output_dir_exits_2(synthetic_root, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  for out, reason in ((blocker, 'exists and is not a directory'),
                      (blocker / 'below', 'cannot be created')):
    result = _cli('--data-root', str(synthetic_root), '--output-dir', str(out))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert reason in lines[0]


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_with_one_line_and_a_summary(
    synthetic_root, tmp_path, signum):
  out = tmp_path / 'out'
  proc = subprocess.Popen(
      [sys.executable, str(REPO / 'local_runner.py'), '--data-root',
       str(synthetic_root), '--output-dir', str(out), '--epochs', '50',
       '--batch-size', '4', *RANDOM_ENCODER],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  # Stop it once the Trainer runs: earlier components have finished by then.
  deadline = time.monotonic() + 600
  line = ''
  while 'Trainer' not in line and time.monotonic() < deadline:
    line = proc.stdout.readline()
    assert line or proc.poll() is None, proc.stderr.read()
  time.sleep(3)
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=180)
  assert proc.returncode == 128 + signum, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1, stderr
  name = signal.Signals(signum).name
  assert lines[0].startswith(f'error: interrupted by {name}; finished: ')
  assert 'Transform' in lines[0]
  summary = json.loads((out / 'run_summary.json').read_text())
  assert name in summary['error']
  assert summary['components']['Transform']['state'] == 'COMPLETE'
  assert summary['components']['Trainer']['state'] != 'COMPLETE'
  assert summary['pushed_model'] is None


def test_a_report_problem_is_a_warning_not_a_failure(tmp_path):
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'pets'
  synthetic_pets.generate(root, num_trainval=8, num_test=4, seed=5,
                          min_size=128, max_size=136)
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'report').write_text('a file where the report folder would go')
  code = local_runner.main(['--data-root', str(root), '--output-dir', str(out),
                            '--epochs', '1', '--batch-size', '4',
                            *RANDOM_ENCODER])
  summary = json.loads((out / 'run_summary.json').read_text())
  assert code == 0
  assert summary['pushed_model'] and os.path.isdir(summary['pushed_model'])
  assert summary['report'] is None
  assert len(summary['warnings']) == 1
  assert summary['warnings'][0].startswith('report not written: ')
