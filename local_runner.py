"""Runs the pet-segmentation pipeline locally: LocalDagRunner, Beam, ML Metadata.

ML Metadata is SQLite in --output-dir unless a MySQL/MariaDB server is named
(--metadata-mysql-host or MLMD_MYSQL_HOST; see pipeline/metadata.py).

  python local_runner.py --data-root DATA --output-dir runs/demo [--epochs N ...]

Exit status: 0 when the run completed (blessed or not); 3 with
--require-blessing when the model was not blessed; 2 for bad arguments or
data root; 4 when another run holds --output-dir; 1 when a component failed
or the metadata server cannot be used (the reason is printed on one line).
"""
import argparse
import logging
import os
import sys
import traceback
import warnings
from typing import List, Optional

from pipeline import settings as config_lib
from pipeline import metadata as metadata_lib
from pipeline import run_lock

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_BLESSED, EXIT_BUSY = 0, 1, 2, 3, 4


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--data-root', required=True,
                 help='Oxford-IIIT Pet layout folder (images/, annotations/)')
  p.add_argument('--output-dir', required=True,
                 help='pipeline root, metadata.db (SQLite only), serving_model/, '
                      'run_summary.json')
  p.add_argument('--epochs', type=int, default=10)
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--learning-rate', type=float, default=1e-3)
  p.add_argument('--encoder-weights', default='none',
                 help="'imagenet' (from the local Keras cache), 'none', or a weights file")
  group = p.add_mutually_exclusive_group()
  group.add_argument('--train-encoder', dest='train_encoder', action='store_true',
                     default=True, help='train the MobileNetV2 encoder too (default)')
  group.add_argument('--freeze-encoder', dest='train_encoder', action='store_false',
                     help='train only the decoder (needs pretrained encoder weights)')
  p.add_argument('--fine-tune-blocks', type=int, default=0, metavar='K',
                 help='after --epochs, unfreeze the top K encoder blocks (0 = off)')
  p.add_argument('--fine-tune-epochs', type=int, default=0)
  p.add_argument('--fine-tune-learning-rate', type=float, default=1e-4)
  p.add_argument('--early-stopping-patience', type=int, default=5,
                 help='epochs without a lower eval loss before stopping; best '
                      'weights are kept (0 = off)')
  p.add_argument('--no-cache-examples', dest='cache_examples',
                 action='store_false',
                 help='re-read the transformed examples every epoch instead of '
                      'keeping them in memory (~0.2 MB an image)')
  p.add_argument('--min-mean-iou', type=float, default=0.0,
                 help='absolute lower bound on eval mean IoU for blessing')
  p.add_argument('--threshold', action='append', default=[], metavar='METRIC=MIN',
                 help='another absolute lower bound, e.g. iou_pet=0.5 (repeatable)')
  p.add_argument('--max-regression', type=float, default=0.0,
                 help='how far mean IoU may fall below the last blessed model')
  p.add_argument('--max-regression-for', action='append', default=[],
                 metavar='METRIC=MAX',
                 help='a no-regression check on another metric, e.g. iou_pet=0.02 '
                      '(repeatable)')
  p.add_argument('--min-valid-fraction', type=float, default=0.5,
                 help='fail when fewer listed image/trimap pairs are valid')
  p.add_argument('--spans', action='store_true',
                 help='data root holds span-N/ folders; read the latest')
  p.add_argument('--span', type=int, default=None,
                 help='with --spans: read this span instead of the latest')
  p.add_argument('--train-spans', type=int, default=1, metavar='N',
                 help='with --spans: train on the newest N spans ingested so far')
  p.add_argument('--beam-arg', action='append', default=[],
                 help='passed to Beam, e.g. --beam-arg=--direct_num_workers=2 (repeatable)')
  p.add_argument('--report-images', type=int, default=8, metavar='N',
                 help='eval images pictured in <output>/report/index.html (0 = no report)')
  p.add_argument('--no-cache', action='store_true',
                 help='re-execute every component even if its inputs did not change')
  p.add_argument('--wait-for-lock', type=float, default=0.0, metavar='SECONDS',
                 help='if another run uses --output-dir, wait this long for it '
                      '(default: refuse at once, exit 4)')
  p.add_argument('--require-blessing', action='store_true',
                 help='exit 3 when the model is not blessed')
  p.add_argument('--verbose', action='store_true', help='show TFX/Beam logs')
  mlmd = p.add_argument_group(
      'ML Metadata on a MySQL/MariaDB server (default: SQLite <output-dir>/metadata.db)',
      'Each flag falls back to its environment variable. The password comes only '
      f'from {metadata_lib.ENV_PASSWORD}: command lines are visible to every user.')
  mlmd.add_argument('--metadata-mysql-host', metavar='HOST',
                    help=f'use this server ({metadata_lib.ENV_HOST})')
  mlmd.add_argument('--metadata-mysql-port', type=int, metavar='N',
                    help=f'({metadata_lib.ENV_PORT}, default {metadata_lib.DEFAULT_PORT})')
  mlmd.add_argument('--metadata-mysql-database', metavar='NAME',
                    help=f'created if missing ({metadata_lib.ENV_DATABASE}, '
                         f'default {metadata_lib.DEFAULT_DATABASE})')
  mlmd.add_argument('--metadata-mysql-user', metavar='NAME',
                    help=f'({metadata_lib.ENV_USER})')
  return p.parse_args(argv)


def _thresholds(items: List[str]) -> dict:
  bounds = {}
  for item in items:
    name, sep, value = item.partition('=')
    try:
      bounds[name.strip()] = float(value)
    except ValueError:
      sep = ''
    if not sep:
      raise ValueError(f'{item!r}: expected METRIC=NUMBER')
  return bounds


def build_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
  defaults = config_lib.PipelineConfig(data_root='', output_dir='')
  return config_lib.PipelineConfig(
      data_root=os.path.abspath(args.data_root),
      output_dir=os.path.abspath(args.output_dir),
      epochs=args.epochs, batch_size=args.batch_size,
      learning_rate=args.learning_rate,
      encoder_weights=args.encoder_weights, train_encoder=args.train_encoder,
      fine_tune_blocks=args.fine_tune_blocks,
      fine_tune_epochs=args.fine_tune_epochs,
      fine_tune_learning_rate=args.fine_tune_learning_rate,
      early_stopping_patience=args.early_stopping_patience,
      cache_examples=args.cache_examples,
      min_mean_iou=args.min_mean_iou, lower_bounds=_thresholds(args.threshold),
      max_regression=args.max_regression,
      max_regressions=_thresholds(args.max_regression_for),
      min_valid_fraction=args.min_valid_fraction, spans=args.spans,
      span=args.span, train_spans=args.train_spans,
      enable_cache=not args.no_cache,
      beam_args=defaults.beam_args + args.beam_arg,
      metadata=metadata_lib.resolve(
          host=args.metadata_mysql_host, port=args.metadata_mysql_port,
          database=args.metadata_mysql_database, user=args.metadata_mysql_user))


def _quiet() -> None:
  """TFX, Beam and TF log every step at INFO; keep the terminal readable."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  warnings.filterwarnings('ignore', category=FutureWarning)
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  logging.getLogger().setLevel(logging.ERROR)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)


def run(config: config_lib.PipelineConfig, verbose: bool = False,
        report_images: int = 0) -> dict:
  """Runs the pipeline with LocalDagRunner and returns the run summary.

  The summary is written even when a component fails: it then carries the
  reason under 'error' and the re-raised exception reaches the caller.
  """
  if not verbose:
    _quiet()
  # Heavy imports (TF, TFX: ~20 s) only once the arguments are known to be good.
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  from pipeline.tools import summary as summary_lib  # pylint: disable=g-import-not-at-top
  if not verbose:
    _quiet()  # Again: importing TF/TFX resets some loggers.
  os.makedirs(config.output_dir, exist_ok=True)
  connection = config.metadata_connection_config()
  pipeline = pipeline_lib.create_pipeline(config, connection)
  try:
    tfx.orchestration.LocalDagRunner().run(pipeline)
  except Exception as e:
    try:
      summary_lib.write_summary(config, connection, error=one_line(e))
    except Exception:  # pylint: disable=broad-except
      pass  # Nothing recorded (e.g. the first node failed to start): no summary.
    raise
  summary = summary_lib.build_summary(
      config, summary_lib.metadata_store.MetadataStore(connection))
  if report_images > 0 and summary['model'] and summary['metrics']:
    from pipeline.tools import report  # pylint: disable=g-import-not-at-top
    summary['report'] = report.write_report(summary, config.output_dir,
                                            report_images)
  summary_lib.save_summary(config, summary)
  return summary


def one_line(error: Exception) -> str:
  """The innermost message of an exception, on one line."""
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[-1] if text else ""}'.strip()


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  try:
    config = build_config(args)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  problem = config_lib.validate(config) or config_lib.check_data_root(config)
  if problem:
    print(f'error: {problem}', file=sys.stderr)
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
    with run_lock.run_lock(config.output_dir, args.wait_for_lock):
      summary = run(config, verbose=args.verbose,
                    report_images=args.report_images)
  except run_lock.RunInProgressError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_BUSY
  except Exception as e:  # pylint: disable=broad-except
    if args.verbose:
      traceback.print_exc()
    # One line, not a traceback: the cause is the innermost message.
    print(f'error: pipeline failed: {one_line(e)}', file=sys.stderr)
    return EXIT_FAILED
  from pipeline.tools import summary as summary_lib  # pylint: disable=g-import-not-at-top
  print(summary_lib.format_summary(summary))
  print(f'Summary: {config.summary_path}')
  if args.require_blessing and not summary['blessed']:
    return EXIT_NOT_BLESSED
  return EXIT_OK


if __name__ == '__main__':
  sys.exit(main())
