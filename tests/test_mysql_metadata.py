"""ML Metadata on a MySQL-compatible server (issue 6): the connection settings, and
two real pipeline runs through the CLI into a private MariaDB started for the session.

The server needs the MariaDB programs (Debian: mariadb-server-core and
mariadb-client-core); without them these tests FAIL and say how to install them.
"""
import json
import os
import pathlib
import re

import pytest
from ml_metadata import metadata_store
from tfx import v1 as tfx

import local_runner
from pipeline import metadata as metadata_lib
from tests import kit
from tests import mysql_server
from tests.conftest import NODES

DATABASE, USER, PASSWORD = 'pets_mlmd', 'pets', "s3cr't pass"  # quote/space: escaping
PIPELINE = 'pet_segmentation'
# Tiny: two runs of every component in about a minute each.
TRAIN, TEST = 16, 8
RUN_ARGS = ['--epochs', '1', '--batch-size', '4'] + kit.RANDOM_ENCODER
SECOND_RUN_ARGS = ['--learning-rate', '5e-4']  # a new Trainer config, same data
# What the second run takes from the first through MLMD's cache, and re-executes.
CACHED = {'PetExampleGen', 'StatisticsGen', 'Transform'}
EXECUTED = {'Trainer', 'Evaluator', 'Pusher'}


@pytest.fixture
def no_mlmd_env(monkeypatch):
  """A clean environment: the developer's own MLMD_MYSQL_* must not leak in."""
  for name in metadata_lib.ENV_VARS:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


# --- the settings (pure, no server) ---------------------------------------------

def test_sqlite_in_the_output_dir_is_the_default(tmp_path):
  metadata = metadata_lib.resolve(environ={})
  assert metadata.backend == metadata_lib.SQLITE
  path = str(tmp_path / 'metadata.db')
  # The same proto TFX's helper builds (that one also makes the directory).
  assert (metadata_lib.connection_config(metadata, path) ==
          tfx.orchestration.metadata.sqlite_metadata_connection_config(path))
  assert metadata_lib.validate(metadata) is None
  assert metadata_lib.check_connection(metadata) is None  # nothing to check


def test_mysql_flags_win_over_the_environment():
  env = {'MLMD_MYSQL_HOST': 'env-host', 'MLMD_MYSQL_PORT': '3307',
         'MLMD_MYSQL_DATABASE': 'env_db', 'MLMD_MYSQL_USER': 'env_user',
         'MLMD_MYSQL_PASSWORD': 'env-pw'}
  from_env = metadata_lib.resolve(environ=env)
  assert (from_env.mysql_host, from_env.mysql_port, from_env.mysql_database,
          from_env.mysql_user, from_env.mysql_password) == (
              'env-host', 3307, 'env_db', 'env_user', 'env-pw')
  flags = metadata_lib.resolve('db.internal', 3310, 'flag_db', 'flag_user', environ=env)
  assert (flags.mysql_host, flags.mysql_port, flags.mysql_database,
          flags.mysql_user, flags.mysql_password) == (
              'db.internal', 3310, 'flag_db', 'flag_user', 'env-pw')
  defaults = metadata_lib.resolve('h', user='u', environ={})
  assert (defaults.mysql_port, defaults.mysql_database, defaults.mysql_password) == (
      3306, 'mlmd', '')
  # The same proto as TFX's helper, and MLMD creates a missing database.
  config = metadata_lib.connection_config(flags, '/unused/metadata.db')
  assert config == tfx.orchestration.metadata.mysql_metadata_connection_config(
      'db.internal', 3310, 'flag_db', 'flag_user', 'env-pw')
  assert config.mysql.skip_db_creation is False
  assert config.WhichOneof('config') == 'mysql'


def test_the_password_is_never_printed():
  metadata = metadata_lib.resolve('h', user='u', environ={'MLMD_MYSQL_PASSWORD': 'hunter2'})
  assert metadata.mysql_password == 'hunter2'
  assert 'hunter2' not in repr(metadata)
  assert metadata.describe('') == 'mysql://u@h:3306/mlmd'


@pytest.mark.parametrize('kwargs, environ, reason', [
    ({'user': 'u'}, {}, 'need(s) --metadata-mysql-host'),
    ({}, {'MLMD_MYSQL_HOST': 'h', 'MLMD_MYSQL_PORT': 'x'}, 'expected a port number'),
])
def test_unusable_settings_raise(kwargs, environ, reason):
  with pytest.raises(ValueError, match=reason.replace('(', r'\(').replace(')', r'\)')):
    metadata_lib.resolve(environ=environ, **kwargs)


@pytest.mark.parametrize('kwargs, reason', [
    ({'port': 0, 'user': 'u'}, 'not a TCP port'),
    ({'database': 'my-db', 'user': 'u'}, 'letters, digits or underscores'),
    ({}, 'needs --metadata-mysql-user'),
])
def test_invalid_settings_have_a_reason(kwargs, reason):
  assert reason in metadata_lib.validate(metadata_lib.resolve('h', environ={}, **kwargs))


@pytest.mark.parametrize('args, reason', [
    (['--metadata-mysql-user', 'u'], 'need(s) --metadata-mysql-host'),
    (['--metadata-mysql-host', 'h', '--metadata-mysql-user', 'u',
      '--metadata-mysql-database', 'a-b'], 'letters, digits or underscores'),
])
def test_cli_refuses_bad_metadata_flags(tmp_path, no_mlmd_env, capsys, args, reason):
  code = local_runner.main(['--data-root', str(tmp_path), '--output-dir',
                            str(tmp_path / 'out'), *args])
  assert code == 2
  assert reason in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()


def test_missing_server_programs_say_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setenv('PATH', str(tmp_path))
  monkeypatch.setattr(mysql_server, '_EXTRA_DIRS', ())
  message = mysql_server.missing_binaries_message()
  assert 'mariadbd' in message and 'mariadb-install-db' in message
  assert 'apt-get install -y --no-install-recommends mariadb-server-core' in message


# --- a private MariaDB server ------------------------------------------------------

@pytest.fixture(scope='session')
def mariadb():
  """mariadbd on 127.0.0.1:<free port>, datadir in a temp dir; stopped at the end."""
  problem = mysql_server.missing_binaries_message()
  if problem:  # fail, not skip: CI must not pass without these tests
    pytest.fail(problem, pytrace=False)
  server = mysql_server.MariaDB().start()
  print(f'\nMariaDB ready on port {server.port} in {server.startup_seconds:.1f} s')
  server.create_database_and_user(DATABASE, USER, PASSWORD)
  yield server
  server.stop()
  assert not server.running


def _metadata(server, database=DATABASE, password=PASSWORD):
  return metadata_lib.MetadataConfig(
      mysql_host=server.host, mysql_port=server.port, mysql_database=database,
      mysql_user=USER, mysql_password=password)


def test_mlmd_creates_a_missing_database(mariadb):
  mariadb.create_database_and_user('fresh_mlmd', USER, PASSWORD, create_database=False)
  assert ['fresh_mlmd'] not in mariadb.sql('SHOW DATABASES')
  assert metadata_lib.check_connection(_metadata(mariadb, 'fresh_mlmd')) is None
  tables = {row[0] for row in mariadb.sql('SHOW TABLES', 'fresh_mlmd')}
  assert {'Artifact', 'Execution', 'Context', 'Event', 'MLMDEnv'} <= tables


def test_connection_problems_are_named(mariadb):
  refused = metadata_lib.check_connection(_metadata(mariadb, password='wrong'))
  assert 'refused' in refused and 'MLMD_MYSQL_PASSWORD' in refused
  closed = metadata_lib.MetadataConfig(mysql_host='127.0.0.1', mysql_port=1,
                                       mysql_user=USER)
  assert metadata_lib.check_connection(closed).startswith(
      'cannot reach the metadata server mysql://pets@127.0.0.1:1/mlmd')


def test_cli_wrong_password_fails_before_running(mariadb, tmp_path, no_mlmd_env,
                                                  capsys, synthetic_root):
  no_mlmd_env.setenv('MLMD_MYSQL_PASSWORD', 'not-the-password-42')
  code = local_runner.main([
      '--data-root', str(synthetic_root), '--output-dir', str(tmp_path / 'out'),
      '--metadata-mysql-host', '127.0.0.1', '--metadata-mysql-port', str(mariadb.port),
      '--metadata-mysql-database', DATABASE, '--metadata-mysql-user', USER])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1
  assert len(err) == 1 and 'refused' in err[0], err
  assert 'not-the-password-42' not in err[0]
  assert not (tmp_path / 'out').exists()


# --- two pipeline runs recorded in MySQL ------------------------------------------

@pytest.fixture(scope='session')
def mysql_runs(mariadb, tmp_path_factory):
  """Two CLI runs on one output dir, metadata in MariaDB.

  The first run is configured by flags (password from the environment), the
  second entirely by MLMD_MYSQL_* and with another learning rate. That changes
  only the Trainer's configuration: ingestion, statistics and Transform come
  from MLMD's cache (cache lookups work on MySQL), while the Trainer makes a
  new model, so "the baseline is the first run's model" cannot be confused
  with "the baseline is the candidate", and the Evaluator really compares two
  models (with --no-cache the same holds, at twice the cost).
  """
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  data = tmp_path_factory.mktemp('mysql_pets')
  synthetic_pets.generate(data, num_trainval=TRAIN, num_test=TEST, seed=6,
                          min_size=128, max_size=140)
  out = tmp_path_factory.mktemp('mysql_output')
  common = ['--data-root', str(data), '--output-dir', str(out), *RUN_ARGS]
  with pytest.MonkeyPatch.context() as env:
    for name in metadata_lib.ENV_VARS:
      env.delenv(name, raising=False)
    env.setenv('MLMD_MYSQL_PASSWORD', PASSWORD)
    first_code = local_runner.main(common + [
        '--metadata-mysql-host', mariadb.host,
        '--metadata-mysql-port', str(mariadb.port),
        '--metadata-mysql-database', DATABASE, '--metadata-mysql-user', USER])
    first = json.loads((out / 'run_summary.json').read_text())
    env.setenv('MLMD_MYSQL_HOST', mariadb.host)
    env.setenv('MLMD_MYSQL_PORT', str(mariadb.port))
    env.setenv('MLMD_MYSQL_DATABASE', DATABASE)
    env.setenv('MLMD_MYSQL_USER', USER)
    second_code = local_runner.main(common + SECOND_RUN_ARGS)
    second = json.loads((out / 'run_summary.json').read_text())
  store = metadata_store.MetadataStore(
      metadata_lib.connection_config(_metadata(mariadb), ''))
  return {'out': out, 'store': store, 'server': mariadb,
          'first_code': first_code, 'first': first,
          'second_code': second_code, 'second': second}


def test_runs_are_recorded_in_mysql_not_sqlite(mysql_runs):
  out, store = mysql_runs['out'], mysql_runs['store']
  assert (mysql_runs['first_code'], mysql_runs['second_code']) == (0, 0)
  assert not list(pathlib.Path(out).rglob('*.db'))  # no SQLite store anywhere
  assert (out / 'tfx').is_dir() and (out / 'run_summary.json').is_file()
  runs = store.get_contexts_by_type('pipeline_run')
  assert sorted(c.name for c in runs) == sorted(
      [mysql_runs['first']['run_id'], mysql_runs['second']['run_id']])
  states = {}
  for key in ('first', 'second'):
    nodes = kit.read_run(store, mysql_runs[key]['run_id']).nodes
    assert set(nodes) == NODES, key
    states[key] = {name: node.state for name, node in nodes.items()}
    for artifacts in nodes['Trainer'].outputs.values():
      assert all(a.uri.startswith(str(out / 'tfx') + os.sep) for a in artifacts)
  assert set(states['first'].values()) == {'COMPLETE'}, states['first']
  assert {states['second'][n] for n in CACHED} == {'CACHED'}, states['second']
  assert {states['second'][n] for n in EXECUTED} == {'COMPLETE'}, states['second']
  # The rows are in MariaDB's own tables (as its SQL client sees them).
  executions = store.get_executions()
  assert len(executions) >= 2 * len(NODES)
  count = mysql_runs['server'].sql('SELECT COUNT(*) FROM Execution', DATABASE)
  assert int(count[0][0]) == len(executions)


def test_second_run_compares_with_the_first_runs_blessed_model(mysql_runs):
  store, first, second = (mysql_runs['store'], mysql_runs['first'],
                          mysql_runs['second'])
  assert first['blessed'] is True and first['baseline_metrics'] is None
  one = kit.read_run(store, first['run_id']).nodes
  two = kit.read_run(store, second['run_id']).nodes
  first_model = one['Trainer'].outputs['model'][0]
  second_model = two['Trainer'].outputs['model'][0]
  assert second_model.id != first_model.id  # retrained: a new candidate
  assert [a.id for a in two['Evaluator'].inputs['model']] == [second_model.id]
  assert [a.id for a in two['Evaluator'].inputs['baseline_model']] == [first_model.id]
  assert 'baseline_model' not in one['Evaluator'].inputs  # nothing blessed yet
  # The first run's blessing of that model is recorded in the same store.
  blessing = one['Evaluator'].outputs['blessing'][0]
  assert blessing.custom_properties['blessed'].int_value == 1
  assert (blessing.custom_properties['current_model_id'].int_value == first_model.id)
  second_blessing = two['Evaluator'].outputs['blessing'][0]
  assert (second_blessing.custom_properties['baseline_model_id'].int_value ==
          first_model.id)
  # Baseline metrics are the first model's on the same eval data: the first
  # run's candidate metrics, recomputed by the second run's Evaluator.
  assert second['baseline_metrics'] is not None
  for name, value in first['metrics'].items():
    assert second['baseline_metrics'][name] == pytest.approx(value, abs=1e-4), name


def test_lineage_reads_the_mysql_store(mysql_runs, monkeypatch, capsys):
  """`python -m pipeline.lineage` with local_runner.py's metadata flags (the
  password from the environment) names the newest push of that output dir."""
  from pipeline import lineage  # pylint: disable=g-import-not-at-top
  first, second, server = (mysql_runs['first'], mysql_runs['second'],
                           mysql_runs['server'])
  pushed = second if second['pushed_model'] else first  # second: if not worse
  monkeypatch.setenv('MLMD_MYSQL_PASSWORD', PASSWORD)
  code = lineage.main([
      str(mysql_runs['out']), '--json', '--metadata-mysql-host', server.host,
      '--metadata-mysql-port', str(server.port), '--metadata-mysql-database',
      DATABASE, '--metadata-mysql-user', USER])
  out, err = capsys.readouterr()
  assert code == 0, err
  info = json.loads(out)
  assert info['pushed']['destination'] == pushed['pushed_model']
  assert info['pushed']['run_id'] == pushed['run_id']
  assert info['model']['uri'] == pushed['model']['uri']
  assert [e['uri'] for e in info['examples']] == [first['examples_uri']]  # cached
  assert (info['baseline'] or {}).get('uri') == (
      first['model']['uri'] if pushed is second else None)


# --- two concurrent runs on one store ------------------------------------------------

def test_concurrent_runs_each_summarise_themselves(mariadb, tmp_path):
  """Two runs at once, different output dirs, one MySQL store: each summary is
  its own run's (not "the newest run of the pipeline"). One is --verbose: TFX
  then logs the connection config, with the password redacted; the other is
  quiet: progress lines, none of the libraries' start-up noise."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  mariadb.create_database_and_user('concurrent_mlmd', USER, PASSWORD)
  # A shared store exists before runs share it (two first connections at once
  # would both create MLMD's tables).
  assert metadata_lib.check_connection(
      _metadata(mariadb, 'concurrent_mlmd')) is None
  env = {k: v for k, v in os.environ.items() if k not in metadata_lib.ENV_VARS}
  env.update({'MLMD_MYSQL_HOST': mariadb.host, 'MLMD_MYSQL_PORT': str(mariadb.port),
              'MLMD_MYSQL_DATABASE': 'concurrent_mlmd', 'MLMD_MYSQL_USER': USER,
              'MLMD_MYSQL_PASSWORD': PASSWORD})
  runs = {}
  for name, extra in (('quiet', []), ('verbose', ['--verbose'])):
    data = tmp_path / f'{name}_pets'
    synthetic_pets.generate(data, num_trainval=8, num_test=4, seed=len(name),
                            min_size=128, max_size=136)
    out = tmp_path / f'{name}_out'
    runs[name] = (out, subprocess.Popen(
        [sys.executable, str(kit.REPO / 'local_runner.py'), '--data-root',
         str(data), '--output-dir', str(out), '--epochs', '1', '--batch-size',
         '4', '--report-images', '0', *kit.RANDOM_ENCODER, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = {name: proc.communicate(timeout=900)[0]
             for name, (_, proc) in runs.items()}
  summaries = {}
  for name, (out, proc) in runs.items():
    assert proc.returncode == 0, outputs[name][-3000:]
    summaries[name] = json.loads((out / 'run_summary.json').read_text())
    assert summaries[name]['examples_uri'].startswith(str(out) + os.sep)
    assert summaries[name]['model']['uri'].startswith(str(out) + os.sep)
    assert summaries[name]['pushed_model'].startswith(str(out) + os.sep)
  assert summaries['quiet']['run_id'] != summaries['verbose']['run_id']
  escaped = PASSWORD.replace("'", "\\'")  # as protobuf text format prints it
  for text in outputs.values():
    assert PASSWORD not in text and escaped not in text
  assert 'password: "***"' in outputs['verbose']  # TFX did log the config
  quiet = outputs['quiet']
  for noise in ('Unable to register', 'oneDNN', 'ran out of data', 'Warning',
                'INFO'):
    assert noise not in quiet, noise
  assert re.search(r'\[\d+/13\] PetExampleGen \.\.\. done in \d+\.\d s', quiet), quiet
  assert re.search(r'\[\d+/13\] Trainer done in \d+\.\d s', quiet), quiet
  assert re.search(r'\d+/\d+ - \d+s - .*val_loss', quiet), quiet  # the epoch
