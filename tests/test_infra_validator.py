"""LocalInfraValidator: the trained model served in a fresh process, and broken copies of it.

Each probe is a real `python probe.py` process loading a real SavedModel (the
session's end-to-end model, or a copy broken on purpose), ~10-20 s each.
"""
import json
import os
import shutil

import pytest
import tensorflow as tf
from tfx.components.pusher import executor as pusher_executor
from tfx.types import artifact_utils, standard_artifacts

from components.infra_validator import component
from components.infra_validator.options import InfraValidatorOptions

SERVING_DIR = 'Format-Serving'  # where the Trainer's SavedModel lives in its Model


@pytest.fixture(scope='module')
def trained(e2e):
  """(Model uri, raw Examples uri) of the session's first end-to-end run."""
  return e2e['first']['model']['uri'], e2e['first']['examples_uri']


def model_artifact(uri):
  model = standard_artifacts.Model()
  model.uri = str(uri)
  return model


def examples_artifact(uri):
  examples = standard_artifacts.Examples()
  examples.uri = str(uri)
  examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  return examples


def blessing_artifact(path):
  blessing = standard_artifacts.InfraBlessing()
  blessing.uri = str(path)
  os.makedirs(blessing.uri, exist_ok=True)
  return blessing


def validate(model_uri, examples_uri, out, **kwargs):
  """Runs the validator's function; returns (InfraBlessing, measurements)."""
  blessing = blessing_artifact(out)
  result = component.validate(model_artifact(model_uri),
                              examples_artifact(examples_uri), blessing, **kwargs)
  on_disk = json.loads((out / component.MEASUREMENTS_FILE).read_text())
  assert on_disk == result
  return blessing, result


def assert_not_blessed(blessing, reason_start):
  assert os.path.isfile(os.path.join(blessing.uri, component.NOT_BLESSED_FILE))
  assert not os.path.exists(os.path.join(blessing.uri, component.BLESSED_FILE))
  assert blessing.get_int_custom_property('blessed') == 0
  reason = blessing.get_string_custom_property('reason')
  assert reason.startswith(reason_start), reason
  assert '\n' not in reason
  assert not pusher_executor.Executor().CheckBlessing({'infra_blessing': [blessing]})
  return reason


def test_healthy_model_is_infra_blessed_through_the_executor(trained, tmp_path):
  """The component's own executor, with the options' defaults."""
  model_uri, examples_uri = trained
  options = InfraValidatorOptions()
  blessing = blessing_artifact(tmp_path / 'out')
  executor = component.LocalInfraValidator.EXECUTOR_SPEC.executor_class()
  executor.Do(
      {'model': [model_artifact(model_uri)],
       'examples': [examples_artifact(examples_uri)]},
      {component.OUTPUT_KEY: [blessing]},
      {'num_examples': options.infra_examples,
       'latency_budget_ms': options.infra_latency_budget_ms,
       'timeout_seconds': options.infra_timeout_seconds,
       'signatures': ','.join(component.SIGNATURES)})
  assert sorted(os.listdir(blessing.uri)) == [component.BLESSED_FILE,
                                              component.MEASUREMENTS_FILE]
  assert blessing.get_int_custom_property('blessed') == 1
  assert blessing.get_string_custom_property('reason') == ''
  assert pusher_executor.Executor().CheckBlessing({'infra_blessing': [blessing]})
  result = json.loads((tmp_path / 'out' / component.MEASUREMENTS_FILE).read_text())
  assert result['ok'] and result['num_examples'] == options.infra_examples
  assert set(result['signatures']) == set(component.SIGNATURES)
  for stats in result['signatures'].values():
    assert 0 < stats['p50_ms'] <= stats['max_ms']
  assert len(result['checks']) == 4
  print('healthy probe:', json.dumps(result))  # the timings, with pytest -s


def test_truncated_variables_fail_with_a_load_reason(trained, tmp_path):
  model_uri, examples_uri = trained
  broken = tmp_path / 'model'
  shutil.copytree(os.path.join(model_uri, SERVING_DIR), broken / SERVING_DIR)
  data = broken / SERVING_DIR / 'variables' / 'variables.data-00000-of-00001'
  size = data.stat().st_size
  with open(data, 'r+b') as f:
    f.truncate(size // 2)
  blessing, result = validate(broken, examples_uri, tmp_path / 'out',
                              num_examples=2)
  assert_not_blessed(blessing, 'loading the SavedModel failed: ')
  assert result['signatures'] == {}


def test_missing_signature_fails_naming_it(trained, tmp_path):
  """A real export without two of the three signatures."""
  model_uri, examples_uri = trained
  loaded = tf.saved_model.load(os.path.join(model_uri, SERVING_DIR))
  partial = tmp_path / 'model'
  tf.saved_model.save(loaded, str(partial / SERVING_DIR), signatures={
      component.SERVING_DEFAULT: loaded.signatures[component.SERVING_DEFAULT]})
  blessing, _ = validate(partial, examples_uri, tmp_path / 'out', num_examples=2)
  reason = assert_not_blessed(blessing, 'signatures ')
  assert reason == (f'signatures {component.TRANSFORM_FEATURES}, '
                    f'{component.IMAGE_BYTES} missing')


def test_too_tight_latency_budget_fails_with_the_latency(trained, tmp_path):
  model_uri, examples_uri = trained
  blessing, result = validate(model_uri, examples_uri, tmp_path / 'out',
                              num_examples=2, latency_budget_ms=0.001)
  reason = assert_not_blessed(blessing, 'latency p50 ')
  # Every output was checked before the latency was judged.
  assert set(result['signatures']) == set(component.SIGNATURES)
  assert reason.endswith(' ms per request over the 0.001 ms budget '
                         f'(signature {component.SERVING_DEFAULT})'), reason


def test_a_probe_slower_than_its_timeout_is_stopped(trained, tmp_path):
  model_uri, examples_uri = trained
  blessing, result = validate(model_uri, examples_uri, tmp_path / 'out',
                              timeout_seconds=0.5)
  assert_not_blessed(blessing, 'the probe timed out after 0.5 s')
  assert result['probe_seconds'] < 10


def test_model_not_blessed_by_the_evaluator_is_not_probed(tmp_path):
  model_blessing = standard_artifacts.ModelBlessing()
  model_blessing.set_int_custom_property('blessed', 0)
  blessing, result = validate(tmp_path / 'no-model', tmp_path / 'no-examples',
                              tmp_path / 'out', blessing=model_blessing)
  assert_not_blessed(blessing, component.NOT_BLESSED_BY_EVALUATOR)
  assert result['skipped'] and 'probe_seconds' not in result


def test_output_checks_name_the_problem():
  """probe.py's checks on hand-made outputs (the probes above feed real ones)."""
  from components.infra_validator import probe  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  contract = component.serving_contract()[component.IMAGE_BYTES]
  example = tf.train.Example()
  example.features.feature['height'].int64_list.value.append(150)
  example.features.feature['width'].int64_list.value.append(140)
  good = {'class_mask': np.zeros([1, 150, 140], np.uint8),
          'height': np.array([150], np.int32), 'width': np.array([140], np.int32),
          'probabilities': np.full([1, 128, 128, 3], 1 / 3, np.float32)}
  probe.check_outputs('s', good, contract, example)
  cases = [
      ('class_mask', np.zeros([1, 128, 128], np.uint8),
       "signature s: output 'class_mask' has shape [1, 128, 128], expected [1, 150, 140]"),
      ('class_mask', np.full([1, 150, 140], 3, np.uint8),
       "signature s: output 'class_mask' has values outside 0..2 (found 3..3)"),
      ('height', np.array([150], np.int64),
       "signature s: output 'height' is int64, expected int32"),
      ('probabilities', np.full([1, 128, 128, 3], np.nan, np.float32),
       "signature s: output 'probabilities' has NaN or infinite values"),
  ]
  for key, value, reason in cases:
    with pytest.raises(probe.Failure) as failure:
      probe.check_outputs('s', dict(good, **{key: value}), contract, example)
    assert str(failure.value) == reason
  with pytest.raises(probe.Failure, match="output 'width' missing"):
    probe.check_outputs('s', {k: v for k, v in good.items() if k != 'width'},
                        contract, example)


def test_contract_names_match_the_export():
  from components.trainer import export  # pylint: disable=g-import-not-at-top
  assert component.SIGNATURES == (export.SERVING_SIGNATURE,
                                  export.TRANSFORM_SIGNATURE,
                                  export.IMAGE_BYTES_SIGNATURE)
  assert export.IMAGE_BYTES_KEY in component.FEEDS


def test_factories_wire_the_options():
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  channel = lambda kind: tfx.dsl.Channel(type=kind)
  model = channel(standard_artifacts.Model)
  examples = channel(standard_artifacts.Examples)
  options = InfraValidatorOptions(infra_examples=3, infra_latency_budget_ms=50.0)
  node = component.create_infra_validator(
      model, examples, channel(standard_artifacts.ModelBlessing), options)
  assert node.exec_properties['num_examples'] == 3
  assert node.exec_properties['latency_budget_ms'] == 50.0
  assert node.exec_properties['signatures'] == ','.join(component.SIGNATURES)
  assert node.outputs[component.OUTPUT_KEY].type is standard_artifacts.InfraBlessing
  assert component.create_infra_validator(
      model, examples, options=InfraValidatorOptions(infra_validation=False)) is None
  # TFX's own, for clusters with TF Serving.
  tfx_node = component.create_tfx_infra_validator(
      model, examples, 'tensorflow/serving', tag='2.16.1', options=options)
  assert tfx_node.outputs['blessing'].type is standard_artifacts.InfraBlessing
  properties = tfx_node.exec_properties
  assert json.loads(properties['serving_spec'])['tensorflow_serving'] == {
      'image_name': 'tensorflow/serving', 'tags': ['2.16.1']}
  request = json.loads(properties['request_spec'])
  assert request['num_examples'] == 3 and request['split_name'] == 'eval'
  assert request['tensorflow_serving']['signature_names'] == [
      component.SERVING_DEFAULT, component.TRANSFORM_FEATURES]
