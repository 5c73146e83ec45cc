"""What a run prints: progress a person can follow, not the libraries' chatter.

By default TensorFlow's C++ plugin-registration lines, oneDNN notices, Python
warnings and TFX/Beam INFO logs are hidden, and TFX's own "Component X is
running/finished" log records become one progress line per component. With
--verbose everything is shown. Either way the MySQL password is redacted from
every log record (TFX logs the metadata connection config, password included).
"""
import logging
import os
import re
import sys
import time
import warnings
from typing import Callable, Iterable, Optional

from pipeline import cli

# TFX's LocalDagRunner logs these around each node (absl, INFO).
_NODE_LOG = re.compile(r'Component (\S+) is (running|finished)\.')
_CACHED_LOG = re.compile(r'A cached execution \d+ is used\.')
# Python warnings nobody running the pipeline can act on.
_QUIET_WARNINGS = ('ignore::FutureWarning,ignore::DeprecationWarning,'
                   'ignore:Your input ran out of data:UserWarning')


def quiet_environment() -> None:
  """Settings that must be in place before TensorFlow is imported.

  Environment variables, so Beam's worker processes inherit them.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # cuFFT/cuDNN/oneDNN lines
  os.environ.setdefault('PYTHONWARNINGS', _QUIET_WARNINGS)
  warnings.filterwarnings('ignore', category=FutureWarning)
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  warnings.filterwarnings('ignore', message='Your input ran out of data')


class Redact(logging.Filter):
  """Replaces secrets in every record that passes (never drops one)."""

  def __init__(self, secrets: Iterable[str]):
    super().__init__()
    from google.protobuf import text_encoding  # pylint: disable=g-import-not-at-top
    # Also as protobuf text format escapes it (TFX logs the connection config
    # proto: a quote in a password appears as \').
    self._secrets = sorted({variant for s in secrets if s for variant in
                            (s, text_encoding.CEscape(s, as_utf8=True),
                             repr(s)[1:-1])}, key=len, reverse=True)

  def filter(self, record: logging.LogRecord) -> bool:
    if self._secrets:
      message = record.getMessage()
      for secret in self._secrets:
        message = message.replace(secret, cli.REDACTED)
      record.msg, record.args = message, None
    return True


class Progress(logging.Handler):
  """TFX's node log records -> `[4/10] Transform ... done in 8.6 s` lines.

  Reads only TFX's own log records (the runner's "Component X is running /
  finished" and the launcher's "A cached execution N is used"), never the
  metadata store, which the running pipeline holds.

  Args:
    total: number of nodes in the pipeline.
    talkative: nodes that print while they run (the Trainer's epochs): their
      start and end get lines of their own.
  """

  def __init__(self, total: int, talkative: Iterable[str] = (), out=None):
    super().__init__(logging.INFO)
    self._total, self._talkative = total, set(talkative)
    self._out = out or sys.stdout
    self._count, self._node, self._start, self._cached = 0, None, 0.0, False

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage().strip()
    if _CACHED_LOG.fullmatch(message):
      self._cached = True
      return
    match = _NODE_LOG.fullmatch(message)
    if not match:
      return
    node, event = match.groups()
    talkative = node in self._talkative
    if event == 'running':
      self._count += 1
      self._node, self._start, self._cached = node, time.monotonic(), False
      self._write(f'[{self._count}/{self._total}] {node} ...'
                  + ('\n' if talkative else ''))
      return
    done = ('cached' if self._cached else
            f'done in {time.monotonic() - self._start:.1f} s')
    prefix = f'[{self._count}/{self._total}] {node} ' if talkative else ' '
    self._write(f'{prefix}{done}\n')

  def _write(self, text: str) -> None:
    self._out.write(text)
    self._out.flush()


def configure_logging(verbose: bool, secrets: Iterable[str],
                      progress: Optional[Progress] = None) -> Callable[[], None]:
  """Routes TFX/Beam/TF logging for a run; returns a function that undoes it.

  Loggers pass INFO records on (TFX's node records feed `progress`, on the
  root logger); what is shown is decided by the handlers: errors only when
  quiet, everything when verbose. Libraries reset absl's logger level during
  a run (Transform's code re-applies absl's verbosity hundreds of times), so
  absl's verbosity is set to INFO, which absl applies to the root logger.
  `secrets` never reach a handler.
  """
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  root = logging.getLogger()
  absl_handler = absl_logging.get_absl_handler()
  if absl_handler not in root.handlers:
    root.addHandler(absl_handler)  # what absl.app would do; one place to filter
  redact = Redact(secrets)
  # TensorFlow's logger has its own handler and does not propagate.
  handlers = list(root.handlers) + list(logging.getLogger('tensorflow').handlers)
  saved = (absl_logging.get_verbosity(), [h.level for h in handlers])
  shown = logging.INFO if verbose else logging.ERROR
  # absl's verbosity, not just a level: absl re-applies it to the root logger
  # whenever anything calls its set_verbosity.
  absl_logging.set_verbosity(absl_logging.INFO)
  for handler in handlers:
    handler.addFilter(redact)
    handler.setLevel(max(handler.level, shown))
  if progress and not verbose:
    root.addHandler(progress)

  def undo() -> None:
    for handler, level in zip(handlers, saved[1]):
      handler.removeFilter(redact)
      handler.setLevel(level)
    if progress:
      root.removeHandler(progress)
    absl_logging.set_verbosity(saved[0])
  return undo
