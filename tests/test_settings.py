"""Settings defined once: flags, --config files, --print-config, the Trainer's
custom_config, the README's flag table and the code fingerprints in cache keys."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import local_runner
from components import evaluator as evaluator_room
from components import fingerprint
from components import trainer as trainer_room
from components.trainer.options import TrainerOptions
from pipeline import cli
from tests.kit import REPO

README_BEGIN, README_END = '<!-- settings:begin -->', '<!-- settings:end -->'


def _cli(*args, env=None):
  # A subprocess: the real entry point, refusing bad usage before TF imports.
  return subprocess.run([sys.executable, str(REPO / 'local_runner.py'), *args],
                        capture_output=True, text=True, timeout=120, check=False,
                        env=env)


def test_readme_flag_table_is_the_definitions():
  readme = (REPO / 'README.md').read_text()
  table = readme.split(README_BEGIN)[1].split(README_END)[0].strip()
  assert table == cli.markdown_table(cli.KUBEFLOW_CLASSES), (
      'README flag table is stale: paste `python -m pipeline.cli --markdown`')


def test_config_file_then_flags(tmp_path):
  config = tmp_path / 'retrain.yaml'
  config.write_text('data_root: /data/pets\noutput-dir: /srv/pets\nepochs: 20\n'
                    'thresholds: {iou_pet: 0.6}\nbeam_args: [--direct_num_workers=2]\n'
                    'train_encoder: false\nencoder_weights: imagenet\n')
  result = _cli('--config', str(config), '--epochs', '3', '--print-config')
  assert result.returncode == 0, result.stderr
  import yaml  # pylint: disable=g-import-not-at-top
  printed = yaml.safe_load(result.stdout)
  assert printed['epochs'] == 3  # the flag wins over the file
  assert printed['data_root'] == '/data/pets'
  assert printed['thresholds'] == {'iou_pet': 0.6}
  assert printed['beam_args'] == ['--direct_num_workers=2']
  assert printed['train_encoder'] is False
  assert printed['learning_rate'] == TrainerOptions().learning_rate  # default
  # What --print-config prints is itself a valid --config file.
  again = tmp_path / 'again.yaml'
  again.write_text(result.stdout)
  assert yaml.safe_load(_cli('--config', str(again), '--print-config').stdout) == printed


@pytest.mark.parametrize('content, reason', [
    ('epochz: 3\n', "unknown setting(s) ['epochz']"),
    ('epochs: three\n', "epochs: expected int, got 'three'"),
    ('train_encoder: 1\n', 'train_encoder: expected bool'),
    ('thresholds: [0.5]\n', 'thresholds: expected a mapping'),
    ('- epochs\n', 'expected a mapping of settings'),
    ('epochs: [\n', 'not valid YAML'),
])
def test_bad_config_files_exit_2_with_one_line(tmp_path, content, reason):
  config = tmp_path / 'bad.yaml'
  config.write_text(content)
  result = _cli('--config', str(config), '--data-root', str(tmp_path),
                '--output-dir', str(tmp_path / 'out'))
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith('error: ') and reason in lines[0], lines[0]
  assert not (tmp_path / 'out').exists()


def test_print_config_redacts_the_password(tmp_path):
  env = dict(os.environ, MLMD_MYSQL_HOST='db.internal',
             MLMD_MYSQL_USER='pets', MLMD_MYSQL_PASSWORD='hunter2-secret')
  result = _cli('--data-root', 'd', '--output-dir', 'o', '--print-config', env=env)
  assert result.returncode == 0, result.stderr
  assert 'hunter2-secret' not in result.stdout + result.stderr
  assert f'mysql_password: \'{cli.REDACTED}\'' in result.stdout
  assert 'mysql_host: db.internal' in result.stdout


def test_kubeflow_runner_shares_the_command_line():
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  kfp, config, _ = kubeflow_v2_runner.parse_config(
      ['--image', 'img', '--data-root', 'gs://b/d', '--output-dir', 'gs://b/o',
       '--epochs', '4', '--threshold', 'iou_pet=0.5', '--no-cache'])
  local, _ = local_runner.parse_config(
      ['--data-root', 'gs://b/d', '--output-dir', 'gs://b/o', '--epochs', '4',
       '--threshold', 'iou_pet=0.5', '--no-cache'])
  assert kfp.image == 'img'
  assert config.training == local.training and config.evaluation == local.evaluation
  assert config.cache is False and config.data_root == 'gs://b/d'  # not made absolute


def test_trainer_custom_config_round_trips_through_json():
  options = TrainerOptions(epochs=7, train_encoder=False, encoder_weights='imagenet',
                           fine_tune_blocks=3)
  config = json.loads(json.dumps(options.to_custom_config()))
  assert TrainerOptions.from_custom_config(config) == options


def test_one_validation_for_the_frozen_random_encoder():
  from components.trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  from components.trainer import options  # pylint: disable=g-import-not-at-top
  reason = options.encoder_problem('none', False)
  with pytest.raises(ValueError) as error:
    model_lib.build_unet(encoder_weights='none', train_encoder=False)
  assert str(error.value) == reason
  config, _ = local_runner.parse_config(['--data-root', 'd', '--output-dir', 'o',
                                         '--encoder-weights', 'none',
                                         '--freeze-encoder'])
  assert cli.settings.validate(config).endswith(reason)


def _components_copy(tmp_path):
  root = tmp_path / 'components'
  shutil.copytree(fingerprint.COMPONENTS_DIR, root,
                  ignore=shutil.ignore_patterns('__pycache__'))
  return root


def test_editing_metrics_changes_only_the_evaluators_fingerprint(tmp_path):
  root = _components_copy(tmp_path)
  before = {room: fingerprint.code_fingerprint(room.CODE, root)
            for room in (evaluator_room, trainer_room)}
  metrics = root / 'evaluator' / 'metrics.py'
  metrics.write_text(metrics.read_text() + '\n# an edit\n')
  after = {room: fingerprint.code_fingerprint(room.CODE, root)
           for room in (evaluator_room, trainer_room)}
  assert after[evaluator_room] != before[evaluator_room]
  assert after[trainer_room] == before[trainer_room]
  assert 'evaluator/metrics.py' in [
      p.relative_to(root).as_posix()
      for p in fingerprint.source_files(evaluator_room.CODE, root)]


def test_every_component_carries_its_code_fingerprint_in_the_compiled_pipeline(
    tmp_path, monkeypatch):
  """What TFX's cache key sees: the compiled node's parameters."""
  # pylint: disable=g-import-not-at-top
  from tfx.dsl.compiler import compiler
  from pipeline import pipeline as pipeline_lib
  config, _ = local_runner.parse_config(['--data-root', str(tmp_path),
                                         '--output-dir', str(tmp_path)])

  def compiled_fingerprints():
    ir = compiler.Compiler().compile(pipeline_lib.create_pipeline(config))
    return {n.pipeline_node.node_info.id:
            n.pipeline_node.parameters.parameters[fingerprint.EXEC_PROPERTY]
            .field_value.string_value
            for n in ir.nodes
            if fingerprint.EXEC_PROPERTY in n.pipeline_node.parameters.parameters}

  before = compiled_fingerprints()
  assert set(before) == {'PetExampleGen', 'DataValidationGate', 'Transform',
                         'Trainer', 'Evaluator', 'InfraValidator', 'Pusher'}
  root = _components_copy(tmp_path)
  metrics = root / 'evaluator' / 'metrics.py'
  metrics.write_text(metrics.read_text() + '\n# an edit\n')
  monkeypatch.setattr(pipeline_lib, 'code_fingerprint',
                      lambda code: fingerprint.code_fingerprint(code, root))
  after = compiled_fingerprints()
  changed = {node for node in before if before[node] != after[node]}
  assert changed == {'Evaluator'}
