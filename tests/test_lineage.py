"""`python -m pipeline.lineage`: what made a pushed model, read from ML Metadata.

On the retraining history (tests/retraining_fixture.py: span 1 pushed, an
idle run that reuses everything, span 2 pushed), plus a hand-made store for
what those runs do not have (an encoder weights file, several training spans).
"""
import json
import os

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline import lineage


def _lineage(capsys, *args):
  """(exit code, stdout, stderr) of the CLI, in this process."""
  code = lineage.main([str(a) for a in args])
  out, err = capsys.readouterr()
  return code, out, err


def test_second_push_names_its_data_settings_and_baseline(retraining, capsys):
  out, first, second = retraining['out'], retraining['first'], retraining['second']
  code, stdout, err = _lineage(capsys, out, '--json')  # default: the newest push
  assert code == 0, err
  info = json.loads(stdout)
  assert info['pushed']['destination'] == second['pushed_model']
  assert info['pushed']['version'] == os.path.basename(second['pushed_model'])
  assert info['pushed']['run_id'] == second['run_id']
  assert info['model'] == {'uri': second['model']['uri'], 'id': info['model']['id'],
                           'run_id': second['run_id']}
  # Span 2's Examples, for training (through Transform) and evaluation.
  for examples in (info['examples'], info['evaluation']['examples']):
    assert [(e['span'], e['uri']) for e in examples] == [(2, second['examples_uri'])]
    assert examples[0]['counts'] == {'train': second['examples']['train'],
                                     'eval': second['examples']['eval']}
    assert examples[0]['rejected'] == second['examples']['rejected']
  # The baseline is run 1's model, named by the run that trained it, although
  # the idle run in between reused it (a cached Trainer outputs it again).
  assert info['baseline']['uri'] == first['model']['uri']
  assert info['baseline']['run_id'] == first['run_id']
  assert info['baseline']['pushed_versions'] == [os.path.basename(first['pushed_model'])]
  assert info['schema']['run_id'] == first['run_id']  # cached ever since
  assert info['transform_graph']['run_id'] == second['run_id']
  trainer = info['trainer']
  assert trainer['code_fingerprint'] == retraining['trainer_fingerprint']
  assert trainer['state'] == 'COMPLETE' and trainer['run_id'] == second['run_id']
  settings = trainer['custom_config']['training']
  assert (settings['epochs'], settings['batch_size'], settings['encoder_weights'],
          settings['train_encoder']) == (1, 4, 'none', True)
  assert info['encoder'] == {'weights': None, 'report': second['model']['encoder']}
  assert info['evaluation']['metrics'] == pytest.approx(second['metrics'])
  assert info['evaluation']['baseline_metrics'] == pytest.approx(
      second['baseline_metrics'])
  assert {'metric': 'mean_iou', 'slice': None, 'kind': 'max_regression',
          'threshold': 1.0} in info['evaluation']['thresholds']
  assert info['blessing']['blessed'] is True

  code, text, _ = _lineage(capsys, out)
  assert code == 0
  for named in (second['pushed_model'], second['examples_uri'],
                first['model']['uri'], first['run_id'],
                retraining['trainer_fingerprint']):
    assert named in text, named


def test_the_first_push_by_version_or_folder(retraining, capsys):
  out, first = retraining['out'], retraining['first']
  version = os.path.basename(first['pushed_model'])
  code, stdout, err = _lineage(capsys, out, '--version', version, '--json')
  assert code == 0, err
  info = json.loads(stdout)
  assert info['pushed']['run_id'] == first['run_id']
  assert info['model']['uri'] == first['model']['uri']
  assert [e['span'] for e in info['examples']] == [1]
  assert info['baseline'] is None and info['evaluation']['baseline_metrics'] is None
  code, stdout, _ = _lineage(capsys, first['pushed_model'], '--json')
  assert code == 0 and json.loads(stdout) == info


def test_unknown_version_is_one_line_and_exit_2(retraining, capsys):
  code, stdout, err = _lineage(capsys, retraining['out'], '--version', '123')
  assert (code, stdout) == (2, '')
  assert err.count('\n') == 1 and 'no pushed version 123' in err, err
  assert os.path.basename(retraining['first']['pushed_model']) in err  # the known ones


@pytest.mark.parametrize('make, reason', [
    (lambda d: d / 'missing', 'no such directory'),
    (lambda d: d, 'no ML Metadata store'),
    (lambda d: _empty_store(d), 'no pushed model recorded'),
])
def test_bad_targets_are_one_line_and_exit_2(tmp_path, capsys, make, reason):
  code, stdout, err = _lineage(capsys, make(tmp_path))
  assert (code, stdout) == (2, '')
  assert err.count('\n') == 1 and reason in err, err


def _empty_store(directory):
  metadata_store.MetadataStore(mlmd.ConnectionConfig(
      sqlite=mlmd.SqliteMetadataSourceConfig(filename_uri=str(directory / 'metadata.db'))))
  return directory


# --- a hand-made store: an imported encoder, two training spans ----------------

def _record(store, inputs, outputs, properties=None):
  """One execution with its INPUT/OUTPUT events (inputs: {key: artifact or
  list}, outputs: {key: (type, uri, custom properties)}); returns {key: artifact}."""
  def type_id(name):
    return store.put_artifact_type(mlmd.ArtifactType(name=name))
  execution = mlmd.Execution(
      type_id=store.put_execution_type(mlmd.ExecutionType(name='Node')),
      last_known_state=mlmd.Execution.COMPLETE)
  for name, value in (properties or {}).items():
    execution.custom_properties[name].string_value = value
  made, pairs = {}, []
  for key, artifacts in inputs.items():
    for artifact in artifacts if isinstance(artifacts, list) else [artifacts]:
      pairs.append((artifact, mlmd.Event(type=mlmd.Event.INPUT, path=mlmd.Event.Path(
          steps=[mlmd.Event.Path.Step(key=key)]))))
  for key, (type_name, uri, props) in outputs.items():
    artifact = mlmd.Artifact(type_id=type_id(type_name), uri=uri)
    for name, value in props.items():
      field = 'int_value' if isinstance(value, int) else 'string_value'
      setattr(artifact.custom_properties[name], field, value)
    made[key] = artifact
    pairs.append((artifact, mlmd.Event(type=mlmd.Event.OUTPUT, path=mlmd.Event.Path(
        steps=[mlmd.Event.Path.Step(key=key)]))))
  _, ids, _ = store.put_execution(execution, pairs, [])
  for artifact, artifact_id in zip(pairs, ids):
    artifact[0].id = artifact_id
  return made


def test_encoder_weights_and_every_training_span_are_followed(tmp_path):
  store = metadata_store.MetadataStore(mlmd.ConnectionConfig(
      fake_database=mlmd.FakeDatabaseConfig()))
  counts = json.dumps({'train': {'examples': 5}, 'eval': {'examples': 2}})
  spans = [_record(store, {}, {'examples': ('Examples', f'/x/examples/{span}', {
      'span': span, 'split_counts': counts, 'num_rejected': 1})})['examples']
           for span in (3, 4)]
  weights = _record(store, {}, {'result': ('Model', '/w/encoder.h5',
                                           {'sha256': 'ab' * 32})})['result']
  schema = _record(store, {}, {'schema': ('Schema', '/x/schema', {})})['schema']
  transform = _record(store, {'examples': spans, 'schema': schema}, {  # --train-spans 2
      'transformed_examples': ('Examples', '/x/transformed', {}),
      'transform_graph': ('TransformGraph', '/x/graph', {})})
  model = _record(store, {'examples': transform['transformed_examples'],
                          'transform_graph': transform['transform_graph'],
                          'schema': schema, 'base_model': weights},
                  {'model': ('Model', str(tmp_path / 'model'), {})},
                  {'custom_config': json.dumps({'training': {'epochs': 3}}),
                   'code_fingerprint': 'f' * 16})['model']
  blessing = _record(store, {'model': model, 'examples': spans[1]}, {
      'blessing': ('ModelBlessing', '/x/blessing', {'blessed': 1})})['blessing']
  push = _record(store, {'model': model, 'model_blessing': blessing}, {
      'pushed_model': ('PushedModel', '/x/pushed', {
          'pushed': 1, 'pushed_version': '17', 'pushed_destination': '/out/serving_model/17'})})
  info = lineage.describe(store, lineage.find_push(store, serving_dir='/out/serving_model'))
  assert info['pushed']['version'] == '17'
  assert [(e['span'], e['counts']['train'], e['rejected']) for e in info['examples']] == [
      (3, 5, 1), (4, 5, 1)]
  assert [e['span'] for e in info['evaluation']['examples']] == [4]
  assert info['encoder']['weights']['uri'] == '/w/encoder.h5'
  assert info['encoder']['weights']['sha256'] == 'ab' * 32
  assert info['trainer']['custom_config'] == {'training': {'epochs': 3}}
  assert info['trainer']['code_fingerprint'] == 'f' * 16
  assert info['evaluation']['uri'] is None and info['baseline'] is None
  assert push['pushed_model'].id == lineage.find_push(
      store, destination='/out/serving_model/17').id
