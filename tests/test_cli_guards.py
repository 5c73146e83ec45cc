"""Hostile or careless use of the CLI: one line and a clear exit status, never a
traceback; signals end a run with a summary. (A report problem never fails a
run: tests/test_tuner.py, whose run is shared for that.)"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

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


# SIGTERM (what schedulers and Kubernetes send) during training; Ctrl-C early,
# once the ExampleGen is done (cheaper: the handler is the same).
@pytest.mark.parametrize('signum, stop_at, finished', [
    (signal.SIGINT, 'PetExampleGen ... done', 'PetExampleGen'),
    (signal.SIGTERM, 'Trainer', 'Transform')])
def test_a_signal_ends_the_run_with_one_line_and_a_summary(
    synthetic_root, tmp_path, signum, stop_at, finished):
  out = tmp_path / 'out'
  proc = subprocess.Popen(
      [sys.executable, str(REPO / 'local_runner.py'), '--data-root',
       str(synthetic_root), '--output-dir', str(out), '--epochs', '50',
       '--batch-size', '4', *RANDOM_ENCODER],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  deadline = time.monotonic() + 600
  line = ''
  while stop_at not in line and time.monotonic() < deadline:
    line = proc.stdout.readline()
    assert line or proc.poll() is None, proc.stderr.read()
  time.sleep(2)
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=180)
  assert proc.returncode == 128 + signum, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1, stderr
  name = signal.Signals(signum).name
  assert lines[0].startswith(f'error: interrupted by {name}; finished: ')
  assert finished in lines[0]
  summary = json.loads((out / 'run_summary.json').read_text())
  assert name in summary['error']
  assert summary['components'][finished]['state'] == 'COMPLETE'
  assert summary['components'].get('Trainer', {}).get('state') != 'COMPLETE'
  assert summary['pushed_model'] is None


def test_a_signal_swallowed_by_a_weakref_callback_is_raised_again(capfd):
  """Python drops an exception raised inside a weakref callback ("Exception
  ignored in ..."): a signal landing there must still stop the run, silently."""
  import threading  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top
  import local_runner  # pylint: disable=g-import-not-at-top

  class Thing:
    """Any object a weakref can point to (a plain object() cannot)."""

  landed = []

  def callback(_):  # the first one lasts long enough for the signal to land in it
    if not landed:
      landed.append(True)
      time.sleep(0.3)

  start = time.monotonic()
  before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)
  with pytest.raises(local_runner.Interrupted) as raised:
    with local_runner.signals_interrupt():
      threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
      for _ in range(200):
        thing = Thing()
        ref = weakref.ref(thing, callback)  # pylint: disable=unused-variable
        del thing  # runs the callback
        time.sleep(0.05)
  assert raised.value.signum == signal.SIGINT
  assert landed and time.monotonic() - start < 10
  assert 'Exception ignored' not in capfd.readouterr().err
  assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)) == before
