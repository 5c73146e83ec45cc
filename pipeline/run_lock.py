"""One run at a time per output directory.

Two LocalDagRunner runs on one output directory would interleave writes to the
same SQLite metadata store and serving directory. `run_lock` holds an
exclusive `flock` on `<output>/.run.lock` for the whole run; the kernel
releases it when the process ends, even when killed, so a crashed run never
leaves a stale lock behind. (Local file systems only: on gs:// outputs, use an
orchestrator that serialises runs, e.g. Kubeflow with one run at a time.)
"""
import contextlib
import fcntl
import os
import time
from typing import Iterator

LOCK_FILE = '.run.lock'


class RunInProgressError(RuntimeError):
  """Another run holds the output directory; str() says which."""


@contextlib.contextmanager
def run_lock(output_dir: str, wait_seconds: float = 0.0) -> Iterator[None]:
  """Holds the output directory's run lock, waiting up to `wait_seconds` for it.

  Raises:
    RunInProgressError: the lock is still held by another run after the wait.
  """
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, LOCK_FILE)
  with open(path, 'a+', encoding='utf-8') as f:
    deadline = time.monotonic() + wait_seconds
    while True:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if time.monotonic() >= deadline:
          f.seek(0)
          holder = f.read().strip() or 'another process'
          raise RunInProgressError(
              f'{output_dir} is in use by another run ({holder}); wait for it '
              'to finish (or use --wait-for-lock SECONDS) or choose another '
              '--output-dir') from None
        time.sleep(1.0)
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()}, started {time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    try:
      yield
    finally:
      f.seek(0)
      f.truncate()
