"""Trainer: `run_fn` fits the U-Net on transformed examples and exports it.

The export (signatures, see `components.export`) applies the Transform graph,
so serving and evaluation see exactly what training saw.
"""
import contextlib
import dataclasses
import json
import math
import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features
from components import trainer as trainer_room
from components.trainer import encoder
from components.trainer import export
from components.trainer import model as model_lib
from components.trainer import multi_worker
from components.trainer import tuning
from components.trainer.options import TrainerOptions

REPORT_JSON = 'model_report.json'
REPORT_TEXT = 'model_report.txt'
HISTORY_JSON = 'training_history.json'  # beside REPORT_JSON in the model dir
MAIN_PHASE, FINE_TUNE_PHASE = 'main', 'fine_tune'


# As TFX's own default (TensorFlowDatasetOptions.shuffle_buffer_size).
SHUFFLE_BUFFER = 10000


def make_dataset(fn_args: tfx.components.FnArgs, files, tf_transform_output,
                 batch_size: int, training: bool, seed: int, cache: bool,
                 augment: Optional[bool] = None) -> tf.data.Dataset:
  """(image_xf, mask_xf) batches from the transformed examples, one pass.

  With `cache`, the parsed examples stay in memory after the first pass, so
  later epochs skip reading, decompressing and parsing the TFRecords: on a
  CPU-only machine that work competes with the train step for the same cores
  (benchmarks/train_benchmark.py). Shuffling then follows the cache, anew
  each epoch; without it, TFX's reader shuffles. `augment` (default: when
  training) adds the random flip.
  """
  dataset = fn_args.data_accessor.tf_dataset_factory(
      files,
      tfxio.TensorFlowDatasetOptions(
          batch_size=batch_size, label_key=features.LABEL_KEY, num_epochs=1,
          shuffle=training and not cache, shuffle_seed=seed),
      tf_transform_output.transformed_metadata.schema)
  # int64 on disk (tf.Example's only integer type), uint8 in memory: the
  # cache then holds 64 KB an example, not 320 KB (float32 pixels, int64 ids).
  dataset = dataset.map(lambda x, y: (tf.cast(x[features.IMAGE_XF_KEY], tf.uint8),
                                      tf.cast(y, tf.uint8)))
  if cache:
    dataset = dataset.unbatch().cache()
    if training:
      dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed,
                                reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
  if training if augment is None else augment:
    dataset = dataset.map(random_flip, num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  # Under MultiWorkerMirroredStrategy each worker reads every file and keeps
  # its share of the examples: sharding by file would need at least as many
  # files as workers, which a small split (or one TFRecord) does not have.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return without_autotune(dataset.with_options(options).prefetch(tf.data.AUTOTUNE))


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Turns tf.data's autotuner off for `dataset`.

  With it on (TF 2.16), each epoch's new iterator waits ~4 s with the CPU idle
  before its first batch, even over in-memory tensors (measured on 2 cores;
  ~40% of an epoch of 256 images). Off, AUTOTUNE means one parallel call per
  core and TF's static prefetch buffer.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return dataset.with_options(options)


def random_flip(image: tf.Tensor, mask: tf.Tensor):
  """Flips image and mask together, left-right, per example (training only)."""
  flip = tf.random.uniform([tf.shape(image)[0], 1, 1, 1]) < 0.5
  return (tf.where(flip, tf.reverse(image, axis=[2]), image),
          tf.where(flip, tf.reverse(mask, axis=[2]), mask))


def write_report(model: keras.Model, model_dir: str, config: TrainerOptions,
                 encoder_info: Dict[str, Any],
                 strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, Any]:
  """model_report.json/.txt: parameters per block, where the encoder came from,
  the effective training settings (the Tuner's choices included) and the
  tf.distribute strategy with its number of replicas."""
  strategy = strategy or tf.distribute.get_strategy()
  report = dict(model_lib.parameter_report(model), encoder=encoder_info,
                training=dataclasses.asdict(config),
                distribution={'strategy': strategy_name(strategy),
                              'replicas': strategy.num_replicas_in_sync})
  tf.io.gfile.makedirs(model_dir)
  with tf.io.gfile.GFile(os.path.join(model_dir, REPORT_JSON), 'w') as f:
    json.dump(report, f, indent=2)
  with tf.io.gfile.GFile(os.path.join(model_dir, REPORT_TEXT), 'w') as f:
    f.write(model_lib.format_report(report) + '\n' + '\n'.join(
        f'encoder {key}: {value}' for key, value in encoder_info.items()) + '\n')
  return report


def strategy_name(strategy: tf.distribute.Strategy) -> str:
  """The public tf.distribute name ('MultiWorkerMirroredStrategy' is, inside,
  a CollectiveAllReduceStrategy); 'default' for no distribution."""
  for name in ('MultiWorkerMirroredStrategy', 'MirroredStrategy',
               'OneDeviceStrategy', 'TPUStrategy'):
    if isinstance(strategy, getattr(tf.distribute, name)):
      return name
  return 'default' if strategy is tf.distribute.get_strategy() else type(
      strategy).__name__


def choose_strategy() -> tf.distribute.Strategy:
  """The tf.distribute strategy for this process's devices.

  MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of several
  workers; MirroredStrategy over several local GPUs, or over several logical
  CPUs (how tests exercise it); else the default (single-device) strategy.
  """
  jobs = _tf_config().cluster_spec().as_dict()
  if sum(len(jobs.get(job, ())) for job in ('chief', 'worker')) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  for kind in ('GPU', 'CPU'):
    devices = tf.config.list_logical_devices(kind)
    if len(devices) > 1:
      return tf.distribute.MirroredStrategy([d.name for d in devices])
  return tf.distribute.get_strategy()


def _tf_config() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
  """TF_CONFIG as TensorFlow reads it (an empty cluster without one)."""
  return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def is_chief() -> bool:
  """Whether this process writes the run's outputs.

  True without a TF_CONFIG cluster; in one, the 'chief' task, or worker 0 when
  the cluster names no chief (MultiWorkerMirroredStrategy's convention).
  """
  tf_config = _tf_config()
  jobs = tf_config.cluster_spec().as_dict()
  return (not jobs or tf_config.task_type == 'chief' or
          (tf_config.task_type == 'worker' and tf_config.task_id == 0 and
           'chief' not in jobs))


@dataclasses.dataclass
class TrainingHistory:
  """Keras' per-epoch logs of both phases of `fit`, in order.

  Attributes:
    epochs: one dict per epoch run: 'epoch' (1-based, as Keras prints it),
      'phase' (MAIN_PHASE or FINE_TUNE_PHASE) and the logs ('loss',
      'accuracy', 'val_loss', 'val_accuracy'; None where not finite).
    fine_tune_epoch: the first epoch of the fine-tuning phase, or None.
  """
  epochs: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  fine_tune_epoch: Optional[int] = None

  def add(self, history: keras.callbacks.History, phase: str) -> None:
    """Appends one `model.fit`'s History as `phase`."""
    for index, epoch in enumerate(history.epoch):
      logs = {name: _finite(values[index])
              for name, values in sorted(history.history.items())}
      self.epochs.append(dict(epoch=epoch + 1, phase=phase, **logs))
      if phase == FINE_TUNE_PHASE and self.fine_tune_epoch is None:
        self.fine_tune_epoch = epoch + 1

  def eval_losses(self) -> List[float]:
    """The eval loss of every epoch that has one."""
    return [e['val_loss'] for e in self.epochs if e.get('val_loss') is not None]

  def save(self, model_dir: str) -> None:
    """Writes HISTORY_JSON into `model_dir` (the chief's model artifact)."""
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, HISTORY_JSON), 'w') as f:
      json.dump(dataclasses.asdict(self), f, indent=2)


def _finite(value) -> Optional[float]:
  """A float, or None for NaN/inf (json would write NaN, which is not JSON)."""
  value = float(value)
  return value if math.isfinite(value) else None


def compile_model(model: keras.Model, learning_rate: float) -> None:
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=['accuracy'])


def callbacks(config: TrainerOptions, run_dir: str) -> list:
  """TensorBoard logs always; early stopping on eval loss when patience > 0."""
  callbacks = [keras.callbacks.TensorBoard(log_dir=run_dir)]
  if config.early_stopping_patience > 0:
    # Keeps the weights of the epoch with the lowest eval loss.
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor='val_loss', patience=config.early_stopping_patience,
        restore_best_weights=True))
  return callbacks


def new_model(config: TrainerOptions) -> keras.Model:
  """The U-Net with the configured encoder, compiled for phase 1."""
  model = model_lib.build_unet(encoder_weights=config.encoder_weights,
                               train_encoder=config.train_encoder)
  compile_model(model, config.learning_rate)
  return model


def fit(config: TrainerOptions, model: keras.Model, train_data: tf.data.Dataset,
        eval_data: tf.data.Dataset, run_dir: str,
        strategy: tf.distribute.Strategy,
        extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainingHistory:
  """Fits `model`: decoder (or all) first, then optional fine-tuning.

  Phase 1 trains with the configured encoder setting for `epochs`. When
  `fine_tune_blocks` > 0, phase 2 unfreezes the encoder's top blocks and trains
  `fine_tune_epochs` more at `fine_tune_learning_rate` (lower, so the
  pretrained features are adjusted rather than overwritten).
  `extra_callbacks` run after the Trainer's own (e.g. a benchmark's timer,
  the Tuner's). Returns the per-epoch logs of both phases.
  """
  history = TrainingHistory()
  with multi_worker.fitting(model, strategy):
    phase = model.fit(train_data, validation_data=eval_data,
                      epochs=config.epochs,
                      callbacks=callbacks(config, run_dir) + list(extra_callbacks),
                      verbose=2)
  history.add(phase, MAIN_PHASE)
  if config.fine_tune_blocks > 0 and config.fine_tune_epochs > 0:
    with strategy.scope():
      model_lib.unfreeze_top_blocks(model, config.fine_tune_blocks)
      compile_model(model, config.fine_tune_learning_rate)
    with multi_worker.fitting(model, strategy):
      phase = model.fit(
          train_data, validation_data=eval_data,
          epochs=config.epochs + config.fine_tune_epochs,
          initial_epoch=config.epochs,
          callbacks=callbacks(config, run_dir) + list(extra_callbacks), verbose=2)
    history.add(phase, FINE_TUNE_PHASE)
  return history


def build_model(config: TrainerOptions,
                strategy: tf.distribute.Strategy) -> keras.Model:
  """The compiled U-Net, built in `strategy`'s scope, ready for `fit`."""
  with strategy.scope():
    model = new_model(config)
  if strategy.num_replicas_in_sync > 1:
    model_lib.synchronize_batch_norm(model)
  return model


def train(config: TrainerOptions, train_data: tf.data.Dataset,
          eval_data: tf.data.Dataset, run_dir: str,
          strategy: tf.distribute.Strategy,
          extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> keras.Model:
  """Builds the U-Net (`build_model`) and `fit`s it; returns the model."""
  model = build_model(config, strategy)
  fit(config, model, train_data, eval_data, run_dir, strategy, extra_callbacks)
  return model


def options_for(fn_args: tfx.components.FnArgs) -> TrainerOptions:
  """The run's TrainerOptions: its custom_config, with the imported encoder
  file (`base_model`) and the Tuner's best hyperparameters applied."""
  config = TrainerOptions.from_custom_config(
      fn_args.custom_config[trainer_room.CUSTOM_CONFIG_KEY])
  if fn_args.base_model:
    config = dataclasses.replace(
        config, encoder_weights=encoder.weights_file(fn_args.base_model))
  if fn_args.hyperparameters:
    config = dataclasses.replace(config, **tuning.chosen(fn_args.hyperparameters))
  return config


def training_data(fn_args: tfx.components.FnArgs, tf_transform_output,
                  config: TrainerOptions):
  """(train, eval) datasets; the batch size is global, split across replicas."""
  return [make_dataset(fn_args, files, tf_transform_output, config.batch_size,
                       training=training, seed=config.seed,
                       cache=config.cache_examples)
          for files, training in ((fn_args.train_files, True),
                                  (fn_args.eval_files, False))]


def run_fn(fn_args: tfx.components.FnArgs) -> keras.Model:
  """TFX Trainer entry point (`components.trainer.RUN_FN`).

  A weights file for the encoder arrives as the `base_model` input (imported
  by the pipeline, see components/trainer/encoder.py); 'imagenet' and 'none'
  come from the settings alone. With a Tuner upstream, its best
  hyperparameters replace the configured ones.

  In a multi-worker cluster (TF_CONFIG) every worker runs this: they train in
  lockstep; only the chief writes the model artifact.

  Returns:
    The trained Keras model (TFX ignores it; tests compare workers' weights).
  """
  config = options_for(fn_args)
  keras.utils.set_random_seed(config.seed)
  strategy = choose_strategy()
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train_data, eval_data = training_data(fn_args, tf_transform_output, config)
  chief = is_chief()
  # Every worker saves (saving may read variables through collective ops);
  # all but the chief into a scratch directory that is then removed.
  with (contextlib.nullcontext() if chief else
        tempfile.TemporaryDirectory(prefix='worker_')) as scratch:
    run_dir, serving_model_dir = (
        (fn_args.model_run_dir, fn_args.serving_model_dir) if chief else
        (os.path.join(scratch, 'logs'), os.path.join(scratch, 'serving')))
    model = build_model(config, strategy)
    history = fit(config, model, train_data, eval_data, run_dir, strategy)
    if chief:
      # The reports sit in the model artifact, beside (not inside) Format-Serving.
      model_dir = os.path.dirname(serving_model_dir)
      write_report(model, model_dir, config,
                   encoder.describe(
                       config.encoder_weights, config.train_encoder,
                       encoder.keras_imagenet_file(),
                       config.fine_tune_blocks if config.fine_tune_epochs else 0),
                   strategy)
      history.save(model_dir)
    export.export_serving_model(model, tf_transform_output, serving_model_dir)
  return model
