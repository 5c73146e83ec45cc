"""Surviving faults: a run killed in the Trainer resumes; concurrent runs are refused; pushes are atomic."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import local_runner
from components.pusher import executor as pusher
from pipeline import run_lock
from tests.kit import RANDOM_ENCODER, REPO, tree_digest

ARGS = ['--epochs', '2', '--batch-size', '4', '--report-images', '0',
        '--no-infra-validation'] + RANDOM_ENCODER


def _wait_for(predicate, timeout, what):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    time.sleep(0.5)
  raise AssertionError(f'timed out waiting for {what}')


def test_killed_run_resumes_and_concurrent_run_is_refused(tmp_path, synthetic_root, capsys):
  out = tmp_path / 'out'
  args = ['--data-root', str(synthetic_root), '--output-dir', str(out)] + ARGS
  victim = subprocess.Popen([sys.executable, str(REPO / 'local_runner.py'), *args],
                            cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    # The Trainer has started once its run directory exists.
    _wait_for(lambda: list((out / 'tfx' / 'Trainer').glob('model_run/*')),
              600, 'the Trainer to start')
    # A second run on the same output dir while the first is running: refused.
    assert local_runner.main(args) == local_runner.EXIT_BUSY
    assert 'is in use by another run (pid' in capsys.readouterr().err
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(60)
  finally:
    if victim.poll() is None:
      os.killpg(victim.pid, signal.SIGKILL)
  # Killed before the Pusher: nothing under serving_model/.
  serving = out / 'serving_model'
  assert not serving.exists() or not any(serving.iterdir())

  assert local_runner.main(args) == 0  # the same command again
  summary = json.loads((out / 'run_summary.json').read_text())
  states = {n: c['state'] for n, c in summary['components'].items()}
  # What had finished before the kill is reused, not re-executed.
  for node in ('PetExampleGen', 'StatisticsGen', 'Transform'):
    assert states[node] == 'CACHED', states
  assert states['Trainer'] == 'COMPLETE' and states['Pusher'] == 'COMPLETE'
  versions = [p.name for p in (out / 'serving_model').iterdir()]
  assert versions == [os.path.basename(summary['pushed_model'])]


def test_lock_is_released_when_the_holder_dies(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[1]);'
       'from pipeline import run_lock\n'
       'with run_lock.run_lock(sys.argv[2]):\n  print("held", flush=True); time.sleep(60)',
       str(REPO), str(tmp_path)], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'held'
  with pytest.raises(run_lock.RunInProgressError, match=f'pid {holder.pid}'):
    with run_lock.run_lock(str(tmp_path), wait_seconds=1.5):
      pass
  holder.kill()
  holder.wait()
  with run_lock.run_lock(str(tmp_path)):  # free again, no stale lock
    pass


def test_interrupted_push_leaves_no_partial_version(tmp_path):
  base = tmp_path / 'serving_model'
  stale = base / (pusher.STAGING_PREFIX + '123')
  stale.mkdir(parents=True)
  (stale / 'half_written').write_text('x')
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from tfx.proto import pusher_pb2  # pylint: disable=g-import-not-at-top
  from tfx.utils import proto_utils  # pylint: disable=g-import-not-at-top
  # A Trainer-style model artifact and a blessing, as the Evaluator leaves them.
  model_artifact = standard_artifacts.Model()
  model_artifact.uri = str(tmp_path / 'model_artifact')
  model = tmp_path / 'model_artifact' / 'Format-Serving'
  (model / 'variables').mkdir(parents=True)
  (model / 'saved_model.pb').write_text('pb')
  (model / 'variables' / 'variables.index').write_text('idx')
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  blessing.set_int_custom_property('current_model_id', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed_artifact')
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
  pusher.Executor().Do(
      {'model': [model_artifact], 'model_blessing': [blessing]},
      {'pushed_model': [pushed]},
      {'push_destination': proto_utils.proto_to_json(destination)})
  entries = sorted(p.name for p in base.iterdir())
  assert len(entries) == 1 and entries[0].isdigit(), entries  # stale staging gone
  assert tree_digest(base / entries[0]) == tree_digest(model)
  assert pushed.get_int_custom_property('pushed') == 1
