"""Runs the pet-segmentation pipeline locally: LocalDagRunner, Beam, ML Metadata.

  python local_runner.py --data-root DATA --output-dir runs/demo [--epochs N ...]
  python local_runner.py --config retrain.yaml [--epochs N ...]

Every flag is also a key of a --config YAML file (flags win); --print-config
shows the effective settings. ML Metadata is SQLite in --output-dir unless a
MySQL/MariaDB server is named (--metadata-mysql-host or MLMD_MYSQL_HOST).

Exit status: 0 when the run completed (blessed or not); 3 with
--require-blessing when the model was not blessed by the Evaluator or failed
infra validation; 2 for bad arguments, data root or output dir; 4 when another
run holds --output-dir; 1 when a component failed (a drifted span or data that
breaks the schema included) or the metadata server cannot be used; 130 / 143 when interrupted by
Ctrl-C (SIGINT) / SIGTERM. The reason is printed on one line, and
run_summary.json is written for failed and interrupted runs too.
"""
import contextlib
import datetime
import os
import random
import signal
import sys
import traceback
import uuid
from typing import List, Optional, Tuple

from components.trainer.options import ENCODER_CHOICES
from pipeline import cli
from pipeline import metadata as metadata_lib
from pipeline import run_lock
from pipeline import settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_BLESSED, EXIT_BUSY = 0, 1, 2, 3, 4
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # exit 128 + signal number
REDELIVER_SECONDS = 1.0


class Interrupted(BaseException):
  """The run was stopped by a signal (a BaseException, like KeyboardInterrupt,
  so that no `except Exception` on the way swallows it)."""

  def __init__(self, signum: int):
    self.signum = signum
    super().__init__(f'interrupted by {signal.Signals(signum).name}')


@contextlib.contextmanager
def signals_interrupt():
  """SIGINT and SIGTERM raise `Interrupted` in the main thread while inside.

  Python drops an exception raised while it runs a weakref callback or a
  `__del__` ("Exception ignored in ..."): a signal arriving just then would be
  lost and the run would go on (seen: SIGINT during the Trainer, exit 0) after
  a traceback on stderr. So such a dropped `Interrupted` is not printed
  (`sys.unraisablehook`), and after the first signal SIGALRM raises it again
  about every second until the run has stopped, except while it is handled.
  """
  received = []

  def rearm():
    # Jittered, so that no periodic work can keep catching every delivery.
    signal.setitimer(signal.ITIMER_REAL,
                     REDELIVER_SECONDS * random.uniform(0.5, 1.5))

  def handler(signum, frame):  # pylint: disable=unused-argument
    if not received:
      received.append(signum)
      rearm()
    raise Interrupted(received[0])

  def redeliver(signum, frame):  # pylint: disable=unused-argument
    if not isinstance(sys.exc_info()[1], Interrupted):
      rearm()
      raise Interrupted(received[0])

  def unraisable(info):
    if not isinstance(info.exc_value, Interrupted):
      default_unraisable(info)

  default_unraisable = sys.unraisablehook
  sys.unraisablehook = unraisable
  previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
  previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, redeliver)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    sys.unraisablehook = default_unraisable
    for signum, old in previous.items():
      signal.signal(signum, old)
DESCRIPTION = __doc__.split('\n', maxsplit=1)[0]


def parse_config(argv: Optional[List[str]] = None
                 ) -> Tuple[settings.PipelineConfig, bool]:
  """The run's config from flags and --config, and whether to only print it.

  Local paths are made absolute. Raises cli.UsageError for bad usage.
  """
  (config,), args = cli.parse(argv, cli.LOCAL_CLASSES, DESCRIPTION)
  if config.data_root:
    config.data_root = os.path.abspath(config.data_root)
  if config.output_dir:
    config.output_dir = os.path.abspath(config.output_dir)
  if config.training.encoder_weights not in ENCODER_CHOICES:
    # The Importer records it as the artifact's URI: lineage needs it whole.
    config.training.encoder_weights = os.path.abspath(config.training.encoder_weights)
  return config, args.print_config


def new_run_id() -> str:
  """A run id unique even for concurrent runs sharing one metadata store."""
  return f'{datetime.datetime.now().isoformat()}-{uuid.uuid4().hex[:8]}'


def run(config: settings.PipelineConfig, run_id: Optional[str] = None) -> dict:
  """Runs the pipeline with LocalDagRunner and returns the run summary.

  The summary (of run `run_id`, read from ML Metadata) is written even when a
  component fails: it then carries the reason under 'error' and the
  exception reaches the caller.
  """
  if not config.verbose:
    from pipeline import console  # pylint: disable=g-import-not-at-top
    console.quiet_environment()
  # Heavy imports (TF, TFX: ~20 s) only once the arguments are known to be good.
  # pylint: disable=g-import-not-at-top
  from pipeline import console
  from pipeline import local_dag
  from pipeline import pipeline as pipeline_lib
  from pipeline import runs
  from pipeline.tools import summary as summary_lib
  # pylint: enable=g-import-not-at-top
  run_id = run_id or new_run_id()
  os.makedirs(config.output_dir, exist_ok=True)
  if os.path.exists(config.summary_path):
    os.remove(config.summary_path)  # never mistaken for this run's
  connection = config.metadata_connection_config()
  pipeline = pipeline_lib.create_pipeline(config, connection)
  progress = console.Progress(len(pipeline.components),
                              talkative=[pipeline_lib.TRAINER, pipeline_lib.TUNER])
  undo = console.configure_logging(config.verbose,
                                   [config.metadata.mysql_password], progress)
  try:
    local_dag.RunIdLocalDagRunner(run_id).run(pipeline)
  except BaseException as e:
    print(flush=True)  # ends a progress line cut short
    _write_summary_after_failure(config, connection, run_id, e)
    raise
  finally:
    undo()
  store = runs.open_store(connection)
  summary = summary_lib.build_summary(config, store, run_id)
  # The model may be pushed already: a problem with the report or the model
  # card is a warning in the summary, never a failed run.
  if config.report_images > 0 and summary['model'] and summary['metrics']:
    from pipeline.tools import report  # pylint: disable=g-import-not-at-top
    try:
      summary['report'] = report.write_report(summary, config.output_dir,
                                              config.report_images, store=store)
    except Exception as e:  # pylint: disable=broad-except
      summary['warnings'].append(f'report not written: {cli.one_line(e)}')
  if summary['pushed_model']:
    from pipeline.tools import model_card  # pylint: disable=g-import-not-at-top
    try:
      summary['model_card'] = model_card.write_model_card(summary, store)[0]
    except Exception as e:  # pylint: disable=broad-except
      summary['warnings'].append(f'model card not written: {cli.one_line(e)}')
  summary_lib.save_summary(config, summary)
  return summary


def _write_summary_after_failure(config, connection, run_id: str,
                                 error: BaseException) -> None:
  """The summary of what ran, with the reason (no summary if nothing ran)."""
  # pylint: disable=g-import-not-at-top
  from pipeline import runs
  from pipeline.tools import summary as summary_lib
  try:
    summary = summary_lib.build_summary(config, runs.open_store(connection),
                                        run_id, error=cli.one_line(error))
    summary_lib.save_summary(config, summary)
  except Exception:  # pylint: disable=broad-except
    pass  # Nothing recorded (e.g. the first node failed to start).


def _finished(config: settings.PipelineConfig) -> str:
  """Which components had finished, from the summary written on the way out."""
  import json  # pylint: disable=g-import-not-at-top
  try:
    with open(config.summary_path, encoding='utf-8') as f:
      components = json.load(f)['components']
  except (OSError, ValueError, KeyError):
    return 'nothing had finished'
  done = [n for n, c in components.items() if c['state'] in ('COMPLETE', 'CACHED')]
  return f'finished: {", ".join(done)}' if done else 'nothing had finished'


def servable(summary: dict) -> bool:
  """Blessed by the Evaluator and, when it ran, by the infra validator."""
  infra = summary.get('infra_validation')
  return summary['blessed'] and (infra is None or infra['blessed'])


def main(argv: Optional[List[str]] = None) -> int:
  try:
    config, print_only = parse_config(argv)
    if print_only:
      print(cli.format_settings(config), end='')
      return EXIT_OK
    problem = (settings.validate(config) or settings.check_data_root(config) or
               settings.check_output_dir(config))
    if problem:
      raise cli.UsageError(problem)
  except cli.UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  print(f'Running the pipeline on {config.data_root} -> {config.output_dir}',
        flush=True)
  if config.metadata.backend == metadata_lib.MYSQL:
    print(f'ML Metadata: {config.metadata.describe(config.metadata_path)}', flush=True)
    # Fails fast with a reason (MLMD's own error for a refused login is empty).
    problem = metadata_lib.check_connection(config.metadata)
    if problem:
      print(f'error: {problem}', file=sys.stderr)
      return EXIT_FAILED
  try:
    with signals_interrupt(), run_lock.run_lock(config.output_dir,
                                                config.wait_for_lock):
      summary = run(config)
  except run_lock.RunInProgressError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_BUSY
  except Interrupted as e:
    print(f'error: {e}; {_finished(config)} (summary: {config.summary_path})',
          file=sys.stderr)
    return 128 + e.signum
  except Exception as e:  # pylint: disable=broad-except
    if config.verbose:
      traceback.print_exc()
    # One line, not a traceback: the cause is the innermost message.
    print(f'error: pipeline failed: {cli.one_line(e)}', file=sys.stderr)
    return EXIT_FAILED
  from pipeline.tools import summary as summary_lib  # pylint: disable=g-import-not-at-top
  print(summary_lib.format_summary(summary))
  print(f'Summary: {config.summary_path}')
  if config.require_blessing and not servable(summary):
    return EXIT_NOT_BLESSED
  return EXIT_OK


if __name__ == '__main__':
  sys.exit(main())
