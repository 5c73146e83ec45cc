"""What made a pushed model, read back from ML Metadata.

  python -m pipeline.lineage OUTPUT_DIR [--version V] [--json]
  python -m pipeline.lineage OUTPUT_DIR/serving_model/VERSION [--json]

The walk starts at the Pusher's `pushed_model` output and follows MLMD's
events backwards (the producer of each input, and its inputs), never run ids:
a cached execution reuses artifacts an earlier run made, and the baseline is
by design another run's model. Default: the newest pushed version. The store is
`<output>/metadata.db`, or a MySQL/MariaDB server given by the same flags and
MLMD_MYSQL_* variables as local_runner.py. Bad input is one line on stderr,
exit 2; a store or artifact that cannot be read, exit 1.
"""
import dataclasses
import datetime
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ml_metadata.proto import metadata_store_pb2

from components import features
from components.fingerprint import EXEC_PROPERTY
from components.options import flag_of, problems, setting
from pipeline import cli
from pipeline import metadata as metadata_lib
from pipeline import runs

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PUSHED_MODEL_TYPE = 'PushedModel'
SERVING_DIR = 'serving_model'  # settings.PipelineConfig.serving_model_dir
REPORT_JSON = 'model_report.json'  # components/trainer/module.py, without TF
MIN_SLICE_SIZE_PROPERTY = 'min_slice_size'  # the Evaluator's, if it has one
SELECTION = 'which pushed model'


class LineageError(ValueError):
  """The target names no pushed model (bad input); str() is one line."""


class StoreUnavailable(RuntimeError):
  """The MySQL metadata server cannot be used; str() is one line."""


@dataclasses.dataclass
class Selection:
  """Which pushed model to describe, and where ML Metadata lives."""
  version: Optional[str] = setting(
      None, 'the pushed version (its folder name under serving_model/; '
      'default: the newest)', SELECTION, metavar='V')
  metadata: metadata_lib.MetadataConfig = dataclasses.field(
      default_factory=metadata_lib.MetadataConfig)


@dataclasses.dataclass
class LineageOptions(Selection):
  json: bool = setting(False, 'print the lineage as JSON', SELECTION)


# --- the command line ---------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]], options_class,
               description: str) -> Tuple[Any, str]:
  """(options, target) from `OUTPUT_DIR|PUSHED_MODEL [flags]`.

  The flags are pipeline/cli.py's (parsed by `cli.parse`), so the metadata
  flags, MLMD_MYSQL_* and --config behave as for local_runner.py; the one
  positional argument is taken out first, skipping flag values.

  Raises:
    cli.UsageError: no target, several, or a bad flag.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  takes_value = {'--config'} | {
      flag_of(field) for _, field, kind in cli.setting_fields(options_class)
      if flag_of(field) and kind is not bool}
  flags, targets, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('-') and arg != '-':
      flags.append(arg)
      if arg in takes_value and i + 1 < len(argv):
        flags.append(argv[i + 1])
        i += 1
    else:
      targets.append(arg)
    i += 1
  (options,), args = cli.parse(flags, (options_class,), description)
  if args.print_config:  # as local_runner.py: print, exit
    print(cli.format_settings(options), end='')
    sys.exit(EXIT_OK)
  problem = problems(options)  # e.g. a MySQL host without a user
  if problem:
    raise cli.UsageError(problem)
  if len(targets) != 1:
    raise cli.UsageError('expected one OUTPUT_DIR or pushed model folder, got '
                         f'{len(targets)}: {targets}')
  return options, targets[0]


def locate(target: str, metadata: metadata_lib.MetadataConfig
           ) -> Tuple[Any, Dict[str, str]]:
  """The store's ConnectionConfig and what to look for in it.

  Returns:
    (connection config, {'serving_dir': ...} for an output dir or
    {'destination': ...} for a pushed model's folder).

  Raises:
    LineageError: no such folder, or no SQLite store beside it.
  """
  remote = '://' in target  # gs:// etc.: only a MySQL store can describe it
  if not remote:
    target = os.path.abspath(target)
    if not os.path.isdir(target):
      raise LineageError(f'{target}: no such directory')
  if not remote and os.path.isfile(os.path.join(target, 'saved_model.pb')):
    where = {'destination': target}
    output_dir = os.path.dirname(os.path.dirname(target))
  else:
    where = {'serving_dir': os.path.join(target, SERVING_DIR)}
    output_dir = target
  sqlite_path = os.path.join(output_dir, 'metadata.db')
  if metadata.backend == metadata_lib.SQLITE and not os.path.isfile(sqlite_path):
    raise LineageError(f'no ML Metadata store {sqlite_path} (a MySQL store: '
                       '--metadata-mysql-host or MLMD_MYSQL_HOST)')
  return metadata_lib.connection_config(metadata, sqlite_path), where


def open_target(target: str, selection: Selection):
  """(store, PushedModel artifact) for a command line's target and --version.

  Raises:
    LineageError: bad input (see `locate`, `find_push`).
    StoreUnavailable: the MySQL server cannot be used.
  """
  connection, where = locate(target, selection.metadata)
  problem = metadata_lib.check_connection(selection.metadata)
  if problem:
    raise StoreUnavailable(problem)
  store = runs.open_store(connection)
  return store, find_push(store, version=selection.version, **where)


def quiet() -> None:
  """No TensorFlow/TFMA chatter on stderr: it holds only a reason to fail."""
  from pipeline import console  # pylint: disable=g-import-not-at-top
  console.quiet_environment()
  logging.getLogger('tensorflow').setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
  quiet()
  try:
    options, target = parse_args(argv, LineageOptions, __doc__.split('\n')[0])
    store, push = open_target(target, options)
    info = describe(store, push)
  except (cli.UsageError, LineageError) as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  except StoreUnavailable as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_FAILED
  except Exception as e:  # pylint: disable=broad-except
    print(f'error: {cli.one_line(e)}', file=sys.stderr)
    return EXIT_FAILED
  print(json.dumps(info, indent=2, sort_keys=True) if options.json
        else format_lineage(info))
  return EXIT_OK


# --- finding the push -----------------------------------------------------------

def _destination(artifact) -> str:
  return runs.custom_property(artifact, 'pushed_destination') or ''


def _same_path(a: str, b: str) -> bool:
  return a.rstrip('/') == b.rstrip('/') if '://' in a + b else (
      os.path.normpath(a) == os.path.normpath(b))


def pushed_models(store, serving_dir: Optional[str] = None,
                  destination: Optional[str] = None) -> List[Any]:
  """The PushedModel artifacts that were pushed (oldest first), optionally
  only those under `serving_dir` or at `destination`.

  A shared MySQL store holds the pushes of every output dir: the folder
  tells them apart.
  """
  try:
    artifacts = store.get_artifacts_by_type(PUSHED_MODEL_TYPE)
  except Exception:  # pylint: disable=broad-except
    artifacts = []  # MLMD raises NotFoundError for a type never registered
  pushed = [a for a in artifacts if runs.custom_property(a, 'pushed')]
  if serving_dir is not None:
    pushed = [a for a in pushed
              if _same_path(os.path.dirname(_destination(a)), serving_dir)]
  if destination is not None:
    pushed = [a for a in pushed if _same_path(_destination(a), destination)]
  return sorted(pushed, key=lambda a: a.id)


def find_push(store, serving_dir: Optional[str] = None,
              destination: Optional[str] = None, version: Optional[str] = None):
  """The PushedModel artifact of one push: at `destination`, or version
  `version` under `serving_dir`, or the newest there.

  Raises:
    LineageError: no such push recorded.
  """
  pushed = pushed_models(store, serving_dir, destination)
  where = destination or serving_dir
  if not pushed:
    raise LineageError(f'no pushed model recorded for {where}')
  if version is None:
    return pushed[-1]
  chosen = [a for a in pushed
            if str(runs.custom_property(a, 'pushed_version')) == str(version)]
  if not chosen:
    known = ', '.join(str(runs.custom_property(a, 'pushed_version'))
                      for a in pushed)
    raise LineageError(f'no pushed version {version} in {where} (pushed: {known})')
  return chosen[-1]


# --- the walk -----------------------------------------------------------------------

def _exec_property(execution, name: str) -> Any:
  """An execution property as recorded (str, int, float), or None."""
  value = execution.custom_properties.get(name)
  kind = value.WhichOneof('value') if value is not None else None
  return getattr(value, kind) if kind else None


def _time(milliseconds: int) -> str:
  return datetime.datetime.fromtimestamp(
      milliseconds / 1000.0, tz=datetime.timezone.utc).isoformat(timespec='seconds')


def _artifact(store, artifact) -> Dict[str, Any]:
  """uri, id and the run whose execution made it (None if not recorded)."""
  made_by = runs.producer(store, artifact.id)
  return {'uri': artifact.uri, 'id': artifact.id,
          'run_id': runs.run_id_of(store, made_by.id) if made_by else None}


def _one(artifacts: Dict[str, List[Any]], key: str):
  found = artifacts.get(key, [])
  return found[0] if found else None


def _examples(store, artifact) -> Dict[str, Any]:
  """An Examples artifact: span, examples per split, rejected inputs."""
  counts = json.loads(runs.custom_property(artifact, 'split_counts') or '{}')
  return dict(_artifact(store, artifact),
              span=runs.custom_property(artifact, 'span'),
              counts={split: c.get('examples') for split, c in counts.items()},
              rejected=runs.custom_property(artifact, 'num_rejected'))


def _inputs_of_producer(store, artifact) -> Dict[str, List[Any]]:
  made_by = runs.producer(store, artifact.id)
  return runs.execution_artifacts(store, made_by.id)[0] if made_by else {}


def read_model_report(model_uri: str) -> Optional[Dict[str, Any]]:
  """The Trainer's model_report.json (beside Format-Serving), or None."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_uri, REPORT_JSON)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def evaluation_metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
  """{'candidate': {metric: value}, 'baseline': {...}} of the overall slice
  (per-slice values are in the run summary, `metrics_by_slice`)."""
  from pipeline.tools import summary  # pylint: disable=g-import-not-at-top
  return {model: summary.overall(by_slice)
          for model, by_slice in summary.tfma_metrics(evaluation_uri).items()}


def _slice_of(spec: Dict[str, Any]) -> Optional[str]:
  """None (overall), 'species' (each species) or 'species:cat' (one value)."""
  values = spec.get('feature_values') or {}
  if values:
    return ','.join(f'{k}:{v}' for k, v in sorted(values.items()))
  return ','.join(spec.get('feature_keys') or []) or None


def recorded_thresholds(evaluator) -> List[Dict[str, Any]]:
  """The blessing thresholds the Evaluator was configured with.

  Read from its `eval_config` exec property (TFMA's EvalConfig as JSON):
  [{'metric', 'slice' (see `_slice_of`), 'kind' ('lower_bound' |
  'max_regression'), 'threshold'}]; a max_regression is how far below the
  baseline the metric may fall.
  """
  config = json.loads(_exec_property(evaluator, 'eval_config') or '{}')
  rows = []
  for spec in config.get('metrics_specs', []):
    for metric in spec.get('metrics', []):
      name = json.loads(metric.get('config') or '{}').get('name',
                                                          metric.get('class_name'))
      per_slice = [(None, metric['threshold'])] if 'threshold' in metric else []
      per_slice += [(_slice_of(s), p.get('threshold', {}))
                    for p in metric.get('per_slice_thresholds', [])
                    for s in p.get('slicing_specs') or [{}]]
      for where, threshold in per_slice:
        value = threshold.get('value_threshold', {})
        if 'lower_bound' in value:
          rows.append({'metric': name, 'slice': where, 'kind': 'lower_bound',
                       'threshold': value['lower_bound']})
        change = threshold.get('change_threshold')
        if change is not None:  # proto JSON drops a zero `absolute`
          rows.append({'metric': name, 'slice': where, 'kind': 'max_regression',
                       'threshold': abs(change.get('absolute', 0.0))})
  return rows


def _pushes_of(store, model_id: int) -> List[str]:
  """The versions a model was pushed as (via the Pushers that took it in)."""
  executions = [e.execution_id for e in store.get_events_by_artifact_ids([model_id])
                if e.type == metadata_store_pb2.Event.INPUT]
  versions = []
  for execution_id in sorted(set(executions)):
    push = _one(runs.execution_artifacts(store, execution_id)[1], 'pushed_model')
    if push is not None and runs.custom_property(push, 'pushed'):
      versions.append(str(runs.custom_property(push, 'pushed_version')))
  return versions


def describe(store, push) -> Dict[str, Any]:
  """The lineage of one PushedModel artifact (see README), a JSON-able dict."""
  pusher = runs.producer(store, push.id)
  pusher_inputs = runs.execution_artifacts(store, pusher.id)[0]
  model = _one(pusher_inputs, 'model')
  blessing = _one(pusher_inputs, 'model_blessing')
  info: Dict[str, Any] = {
      'pushed': {'version': str(runs.custom_property(push, 'pushed_version')),
                 'destination': _destination(push), 'uri': push.uri,
                 'time': _time(pusher.last_update_time_since_epoch),
                 'run_id': runs.run_id_of(store, pusher.id)},
      'model': _artifact(store, model),
      'blessing': dict(_artifact(store, blessing), blessed=bool(
          runs.custom_property(blessing, 'blessed'))),
  }
  evaluator = runs.producer(store, blessing.id)
  evaluator_inputs, evaluator_outputs = runs.execution_artifacts(store, evaluator.id)
  evaluation = _one(evaluator_outputs, 'evaluation')
  by_model = evaluation_metrics(evaluation.uri) if evaluation else {}
  info['evaluation'] = {
      'uri': evaluation.uri if evaluation else None,
      'metrics': by_model.get('candidate', {}),
      'baseline_metrics': by_model.get('baseline'),
      'thresholds': recorded_thresholds(evaluator),
      'min_slice_size': _exec_property(evaluator, MIN_SLICE_SIZE_PROPERTY),
      'examples': [_examples(store, a)
                   for a in evaluator_inputs.get('examples', [])]}
  baseline = _one(evaluator_inputs, 'baseline_model')
  info['baseline'] = (dict(_artifact(store, baseline),
                           pushed_versions=_pushes_of(store, baseline.id))
                      if baseline is not None else None)
  trainer = runs.producer(store, model.id)
  trainer_inputs = runs.execution_artifacts(store, trainer.id)[0]
  custom_config = json.loads(_exec_property(trainer, 'custom_config') or 'null')
  info['trainer'] = {
      'execution_id': trainer.id, 'run_id': runs.run_id_of(store, trainer.id),
      'state': runs.state_name(trainer), 'custom_config': custom_config,
      'code_fingerprint': _exec_property(trainer, EXEC_PROPERTY)}
  weights = _one(trainer_inputs, 'base_model')
  report = read_model_report(model.uri) or {}
  info['encoder'] = {
      'weights': (dict(_artifact(store, weights),
                       sha256=runs.custom_property(weights, 'sha256'))
                  if weights is not None else None),
      'report': report.get('encoder')}
  tuned = _one(trainer_inputs, 'hyperparameters')
  info['hyperparameters'] = _artifact(store, tuned) if tuned else None
  schema = _one(trainer_inputs, 'schema')
  info['schema'] = _artifact(store, schema) if schema else None
  graph = _one(trainer_inputs, 'transform_graph')
  info['transform_graph'] = _artifact(store, graph) if graph else None
  # The Trainer reads Transform's output; the raw Examples (their spans) are
  # Transform's inputs: one artifact a span with --train-spans N.
  train = trainer_inputs.get('examples', [])
  raw = [a for t in train for a in _inputs_of_producer(store, t).get('examples', [])]
  info['examples'] = [_examples(store, a) for a in (raw or train)]
  return info


# --- printing ---------------------------------------------------------------------

def _examples_line(examples: Dict[str, Any]) -> str:
  counts = ', '.join(f'{split} {n}' for split, n in sorted(examples['counts'].items()))
  return (f"span {examples['span']}: {counts or 'no counts'}, rejected "
          f"{examples['rejected']}  ({examples['uri']}, run {examples['run_id']})")


def format_lineage(info: Dict[str, Any]) -> str:
  """The lineage for people: one line a link."""
  pushed, trainer, encoder = info['pushed'], info['trainer'], info['encoder']
  lines = [f"Pushed model {pushed['version']}: {pushed['destination']}",
           f"  pushed      {pushed['time']} by run {pushed['run_id']}",
           f"  model       {info['model']['uri']} (trained in run "
           f"{info['model']['run_id']})"]
  lines += [f'  trained on  {_examples_line(e)}' for e in info['examples']]
  lines += [f'  evaluated on {_examples_line(e)}'
            for e in info['evaluation']['examples']]
  for name, key in (('schema', 'schema'), ('transform', 'transform_graph'),
                    ('tuned by', 'hyperparameters')):
    if info[key]:
      lines.append(f"  {name:<11} {info[key]['uri']} (run {info[key]['run_id']})")
  settings = (trainer['custom_config'] or {}).get('training', trainer['custom_config'])
  lines.append(f"  trainer     code {trainer['code_fingerprint']}, execution "
               f"{trainer['execution_id']} ({trainer['state'].lower()})")
  if isinstance(settings, dict):
    lines.append('  settings    ' + ', '.join(f'{k}={v}' for k, v in sorted(settings.items())))
  if encoder['weights']:
    lines.append(f"  encoder     {encoder['weights']['uri']} (sha256 "
                 f"{encoder['weights']['sha256']})")
  elif encoder['report']:
    lines.append(f"  encoder     {encoder['report']['source']} (no weights file)")
  baseline_metrics = info['evaluation']['baseline_metrics'] or {}
  for name, value in sorted(info['evaluation']['metrics'].items()):
    base = baseline_metrics.get(name)
    lines.append(f'  {name:<11} {value:.4f}' +
                 (f'  (baseline {base:.4f})' if base is not None else ''))
  thresholds = [
      f"{t['metric']}{'@' + t['slice'] if t['slice'] else ''} "
      + (f">= {t['threshold']:g}" if t['kind'] == 'lower_bound'
         else f">= baseline - {t['threshold']:g}")
      for t in info['evaluation']['thresholds']]
  if thresholds:
    lines.append('  thresholds  ' + ', '.join(thresholds))
  lines.append(f"  blessed     {'yes' if info['blessing']['blessed'] else 'no'}")
  baseline = info['baseline']
  if baseline:
    pushed_as = ', '.join(baseline['pushed_versions']) or 'never pushed'
    lines.append(f"  baseline    {baseline['uri']} from run {baseline['run_id']} "
                 f"(pushed as {pushed_as})")
  else:
    lines.append('  baseline    none (no earlier blessed model)')
  return '\n'.join(lines)


if __name__ == '__main__':
  sys.exit(main())
