"""The encoder's weights as a pipeline input: TFX's Importer -> Trainer (`base_model`).

Three runs on one output dir with a frozen encoder from a weights file: the
lineage and the summary name the file and its sha256; the frozen encoder comes
out bit-identical, the decoder trained; an unchanged file reuses the Trainer,
a changed one re-executes it.
"""
import hashlib
import json
import pathlib
import shutil

import keras
import numpy as np
import pytest

import local_runner
from components.trainer import export
from tests import kit

ARGS = ['--epochs', '1', '--batch-size', '4', '--report-images', '0',
        '--freeze-encoder'] + kit.NO_INFRA


def _save_encoder(path, seed):
  keras.utils.set_random_seed(seed)
  keras.applications.MobileNetV2(input_shape=[128, 128, 3], include_top=False,
                                 weights=None).save_weights(str(path))
  return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('encoder_pets')
  synthetic_pets.generate(root, num_trainval=8, num_test=4, seed=3,
                          min_size=128, max_size=136)
  out = tmp_path_factory.mktemp('encoder_out')
  weights = out.parent / f'{out.name}_encoder.weights.h5'
  command = ['--data-root', str(root), '--output-dir', str(out),
             '--encoder-weights', str(weights)] + ARGS
  result = {'out': out, 'weights': weights}
  for name, seed in (('first', 1), ('same', None), ('changed', 2)):
    if seed is not None:
      result[f'{name}_sha'] = _save_encoder(weights, seed)
      # Kept: the file is overwritten later (and .h5 files are not
      # byte-for-byte reproducible from a seed).
      shutil.copy(weights, out.parent / f'{out.name}_{name}.weights.h5')
      result[f'{name}_copy'] = out.parent / f'{out.name}_{name}.weights.h5'
    assert local_runner.main(command) == 0, name
    result[name] = json.loads((out / 'run_summary.json').read_text())
  return result


def test_summary_names_the_encoder_and_its_sha256(runs):
  first = runs['first']
  assert first['model']['encoder'] == {
      'source': str(runs['weights']), 'sha256': runs['first_sha'], 'frozen': True,
      'fine_tuned_blocks': 0}
  report = (pathlib.Path(first['model']['uri']) / 'model_report.txt').read_text()
  assert f"encoder sha256: {runs['first_sha']}" in report
  assert runs['changed']['model']['encoder']['sha256'] == runs['changed_sha']


def test_lineage_links_the_model_to_the_imported_weights(runs):
  run = kit.read_run(runs['out'], runs['first']['run_id'])
  imported = run.output('EncoderWeightsImporter', 'result')
  assert imported.uri == str(runs['weights'])
  assert imported.custom_properties['sha256'].string_value == runs['first_sha']
  assert [a.id for a in run.nodes['Trainer'].inputs['base_model']] == [imported.id]


def test_frozen_encoder_is_bit_identical_and_the_decoder_trained(runs):
  source_path = runs['first_copy']
  keras.backend.clear_session()
  source = keras.applications.MobileNetV2(input_shape=[128, 128, 3],
                                          include_top=False, weights=None)
  source.load_weights(str(source_path))
  model = export.load_keras_model(
      str(pathlib.Path(runs['first']['model']['uri']) / 'Format-Serving'))
  encoder = model.get_layer('encoder')
  for layer in encoder.layers:
    if layer.weights:
      for trained, original in zip(layer.get_weights(),
                                   source.get_layer(layer.name).get_weights()):
        np.testing.assert_array_equal(trained, original, err_msg=layer.name)
  # The decoder moved away from its initialisation (the same seeded build).
  from components.trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  initial = model_lib.build_unet(str(source_path), train_encoder=False)
  for name in ('upsample_1', 'final'):
    assert not np.array_equal(model.get_layer(name).get_weights()[0],
                              initial.get_layer(name).get_weights()[0]), name


def test_unchanged_file_reuses_the_trainer_a_changed_one_retrains(runs):
  same, changed = runs['same']['components'], runs['changed']['components']
  assert same['Trainer']['state'] == 'CACHED'
  assert same['EncoderWeightsImporter']['state'] in ('COMPLETE', 'CACHED')
  assert changed['Trainer']['state'] == 'COMPLETE'
  assert runs['changed']['model']['uri'] != runs['first']['model']['uri']
  assert runs['changed_sha'] != runs['first_sha']
