"""Trainer pieces: input pipeline, augmentation, fine-tuning, tf.distribute on two devices."""
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.components.util import examples_utils, tfxio_utils
from tfx.proto import example_gen_pb2

from components.trainer import model as model_lib
from components.trainer import module as trainer
from components.trainer.options import TrainerOptions
from tests.conftest import E2E_TRAIN
from tests import kit
from tests.kit import REPO, node_outputs

CONFIG = TrainerOptions(encoder_weights='none', train_encoder=True,
                        learning_rate=1e-3, epochs=1, early_stopping_patience=0)


def _tiny_data(n=4, batch=2):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 128, 128, 3)).astype('uint8')
  masks = rng.integers(0, 3, (n, 128, 128, 1)).astype('uint8')
  return tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch)


def test_random_flip_moves_image_and_mask_together():
  # The mask is a function of the image, so any flip that treats them
  # differently breaks the relation somewhere.
  image = tf.random.stateless_uniform([16, 128, 128, 3], seed=[1, 2])
  mask = tf.cast(image[..., :1] * 3, tf.int64)
  flipped_image, flipped_mask = trainer.random_flip(image, mask)
  np.testing.assert_array_equal(tf.cast(flipped_image[..., :1] * 3, tf.int64), flipped_mask)
  changed = np.any(flipped_image.numpy() != image.numpy(), axis=(1, 2, 3))
  assert 0 < changed.sum() < 16  # per example: some flipped, some not


def test_fine_tuning_unfreezes_only_the_top_blocks(tmp_path):
  keras.backend.clear_session()
  weights = tmp_path / 'encoder.weights.h5'
  keras.applications.MobileNetV2(input_shape=[128, 128, 3], include_top=False,
                                 weights=None).save_weights(weights)
  config = dataclasses.replace(CONFIG, encoder_weights=str(weights),
                               train_encoder=False, fine_tune_blocks=2,
                               fine_tune_epochs=1)
  reference = model_lib.build_unet(str(weights), train_encoder=False)
  before = {w.path: w.numpy() for w in reference.get_layer('encoder').weights}

  model = trainer.train(config, _tiny_data(), _tiny_data(), str(tmp_path / 'logs'),
                        tf.distribute.get_strategy())
  encoder = model.get_layer('encoder')
  changed = {layer.name for layer in encoder.layers for w in layer.weights
             if not np.allclose(w.numpy(), before[w.path])}
  assert changed, 'fine-tuning trained nothing in the encoder'
  # Only blocks 15 and 16 moved, and never a BatchNorm layer.
  assert all(name.startswith(('block_15_', 'block_16_')) for name in changed), changed
  assert not any(isinstance(encoder.get_layer(n), keras.layers.BatchNormalization)
                 for n in changed)
  report = model_lib.parameter_report(model)['totals']
  assert 4_660_323 < report['trainable_params'] < 6_471_395


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
  # Logical devices must be set before TF initialises: a fresh process.
  script = textwrap.dedent(f'''
      import json, sys
      sys.path.insert(0, {str(REPO)!r})
      import tensorflow as tf
      cpu = tf.config.list_physical_devices('CPU')[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from components.trainer import module as trainer
      from tests.test_trainer import CONFIG, _tiny_data
      strategy = trainer.choose_strategy()
      model = trainer.train(CONFIG, _tiny_data(), _tiny_data(), {str(tmp_path)!r}, strategy)
      kernel = model.get_layer('final').kernel
      print(json.dumps({{'strategy': type(strategy).__name__,
                        'replicas': strategy.num_replicas_in_sync,
                        'variable': type(kernel.value).__name__}}))
  ''')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, timeout=600, check=False, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  facts = json.loads(result.stdout.strip().splitlines()[-1])
  assert facts['strategy'] == 'MirroredStrategy'
  assert facts['replicas'] == 2
  assert facts['variable'] == 'MirroredVariable'


def _examples(dataset):
  """Per example, in order: (mask sum, image sum), both unchanged by a flip."""
  return [(int(m.sum()), round(float(i.sum()), 1))
          for images, masks in dataset
          for i, m in zip(images.numpy(), masks.numpy())]


def test_cached_input_reads_the_files_once_and_reshuffles_each_epoch(e2e, tmp_path):
  out, run_id = e2e['out'], e2e['first']['run_id']
  examples = node_outputs(out, run_id, 'Transform', 'transformed_examples')[0]
  graph = node_outputs(out, run_id, 'Transform', 'transform_graph')[0]
  shutil.copytree(os.path.join(examples.uri, 'Split-train'), tmp_path / 'train')
  files = [str(p) for p in sorted((tmp_path / 'train').glob('*.gz'))]
  artifact = tfx.types.standard_artifacts.Examples()
  artifact.uri = examples.uri
  examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
  fn_args = tfx.components.FnArgs(data_accessor=tfx.components.DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
          [artifact], []),
      record_batch_factory=None, data_view_decode_fn=None))
  transform_output = tft.TFTransformOutput(graph.uri)

  def dataset(training, cache):
    return trainer.make_dataset(fn_args, files, transform_output, batch_size=4,
                                training=training, seed=0, cache=cache)

  uncached = _examples(dataset(training=False, cache=False))
  assert len(uncached) == E2E_TRAIN
  # What the cache holds: 8-bit pixels and class ids, 64 KB an example
  # (float32 pixels and int64 ids were 320 KB: 5x).
  spec = dataset(training=True, cache=True).element_spec
  assert [t.dtype for t in spec] == [tf.uint8, tf.uint8]
  assert sum(np.prod(t.shape[1:]) * t.dtype.size for t in spec) == 65_536
  cached_eval, cached_train = (dataset(training=False, cache=True),
                               dataset(training=True, cache=True))
  first_eval, first_train = _examples(cached_eval), _examples(cached_train)
  for path in files:  # Later epochs must come from memory.
    os.remove(path)
  second_eval, second_train = _examples(cached_eval), _examples(cached_train)
  with pytest.raises(tf.errors.InvalidArgumentError, match='No files matched'):
    _examples(dataset(training=False, cache=False))

  assert first_eval == second_eval == uncached  # eval: reader order, every epoch
  assert sorted(first_train) == sorted(second_train) == sorted(uncached)
  assert first_train != second_train  # training: a new order each epoch
  assert first_train != uncached


_WORKER_SCRIPT = '''
import hashlib, json, os, sys
sys.path.insert(0, {repo!r})
from tfx import v1 as tfx
from tfx.components.util import examples_utils, tfxio_utils
from tfx.proto import example_gen_pb2
from components import trainer as room
from components.trainer import module as trainer
from components.trainer.options import TrainerOptions

artifact = tfx.types.standard_artifacts.Examples()
artifact.uri = {examples!r}
examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
split = lambda name: [os.path.join(artifact.uri, name, f)
                      for f in sorted(os.listdir(os.path.join(artifact.uri, name)))]
options = TrainerOptions(encoder_weights={weights!r}, train_encoder=False,
                         epochs=1, batch_size=4, early_stopping_patience=0)
model = trainer.run_fn(tfx.components.FnArgs(
    data_accessor=tfx.components.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
            [artifact], []),
        record_batch_factory=None, data_view_decode_fn=None),
    train_files=split('Split-train'), eval_files=split('Split-eval'),
    transform_output={graph!r}, serving_model_dir={out!r} + '/serving',
    model_run_dir={out!r} + '/logs',
    custom_config={{room.CUSTOM_CONFIG_KEY: options.to_custom_config()}}))
weights = hashlib.sha256(b''.join(w.tobytes() for w in model.get_weights()))
print(json.dumps({{'weights': weights.hexdigest(), 'chief': trainer.is_chief(),
                  'history': model.history.history}}))
'''


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_multi_worker_training_on_loopback(e2e, tmp_path):
  """Issue 13: MultiWorkerMirroredStrategy, two worker processes on 127.0.0.1,
  each running the Trainer's own run_fn on the same transformed data."""
  out, run_id = e2e['out'], e2e['first']['run_id']
  examples = node_outputs(out, run_id, 'Transform', 'transformed_examples')[0]
  graph = node_outputs(out, run_id, 'Transform', 'transform_graph')[0]
  weights = tmp_path / 'encoder.weights.h5'  # frozen: a quicker step, same protocol
  keras.applications.MobileNetV2(input_shape=[128, 128, 3], include_top=False,
                                 weights=None).save_weights(weights)
  cluster = {'worker': [f'127.0.0.1:{p}' for p in _free_ports(2)]}
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}))
    script = _WORKER_SCRIPT.format(repo=str(REPO), weights=str(weights),
                                   examples=examples.uri,
                                   graph=graph.uri, out=str(tmp_path / f'w{index}'))
    workers.append(subprocess.Popen([sys.executable, '-c', script], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=REPO))
  results = []
  for proc in workers:
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    results.append(json.loads(stdout.strip().splitlines()[-1]))
  assert [r['chief'] for r in results] == [True, False]
  # Each worker trained on its own half of every batch (DATA sharding): equal
  # weights mean the gradients were all-reduced, step by step.
  assert results[0]['weights'] == results[1]['weights']
  # Only the chief wrote a model (and its report); the other left nothing.
  assert (tmp_path / 'w0' / 'serving' / 'saved_model.pb').is_file()
  report = json.loads((tmp_path / 'w0' / 'model_report.json').read_text())
  assert report['distribution'] == {'strategy': 'MultiWorkerMirroredStrategy',
                                    'replicas': 2}
  # Logs are averaged across workers, so both saw the same losses.
  assert results[0]['history'] == results[1]['history']
  assert len(results[0]['history']['val_loss']) == 1
  assert not (tmp_path / 'w1').exists()
  assert report['encoder']['frozen'] is True
  served = tf.saved_model.load(str(tmp_path / 'w0' / 'serving'))
  raw = kit.split_records(os.path.join(
      node_outputs(out, run_id, 'PetExampleGen', 'examples')[0].uri, 'Split-eval'))
  masks = served.signatures['serving_default'](examples=tf.constant(raw[:3]))
  assert masks['class_mask'].shape == (3, 128, 128)
  assert set(np.unique(masks['class_mask'].numpy())) <= {0, 1, 2}
