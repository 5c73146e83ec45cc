"""Training throughput: the Trainer's input pipeline + model vs. a bare Keras fit.

  .venv/bin/python benchmarks/train_benchmark.py [--num-images 256]
      [--batch-size 16] [--epochs 3] [--augment on|off]
      [--encoders frozen,trainable] [--schedule interleaved|sequential]
      [--cache on|off]
      [--work-dir DIR] [--json FILE]

One run, one process, the same synthetic pets (`pipeline.tools.synthetic_pets`,
160-240 px, generated into a temporary folder or read from `--data DIR`):

  1. A tiny TFX pipeline on LocalDagRunner (SQLite metadata, DirectRunner
     in_memory, as `local_runner.py`): PetExampleGen (`create_example_gen`),
     ImportSchemaGen(schemas/schema.pbtxt) and Transform(preprocessing_fn=
     `components.transform.PREPROCESSING_FN`). Its artifacts are read back
     from ML Metadata (`pipeline.runs`: the newest run's Transform) and turned
     into the Trainer's `FnArgs` exactly as TFX's Trainer executor does
     (`fn_args_utils.get_common_fn_args`, then transform_output =
     transform_graph_path): the data accessor is TFX's own, a tfx_bsl
     `TFExampleRecord` TFXIO over the gzipped transformed tf.Examples.
  2. For each encoder setting, two sides train the same U-Net
     (`model_lib.build_unet`, `trainer.compile_model`, same seed, batch size and
     epochs):
       (a) trainer  `trainer.make_dataset(fn_args, ...)` for train
                    (training=True: shuffled, flipped) and eval, then
                    `trainer.train(options, ..., extra_callbacks=[timer, ...])`
                    with the Trainer's settings (`TrainerOptions`): its
                    callbacks, its validation pass, its fit. `run_fn` minus the
                    export.
       (b) bare     the same transformed images and masks, read once into numpy
                    arrays; `model.fit` on them in memory, no validation.
     Augmentation (`--augment`): `on` (default) leaves the Trainer code untouched
     (random left-right flips) and gives (b) the same flip on an in-memory
     `tf.data.Dataset.from_tensor_slices(arrays).shuffle.batch.map(flip)`;
     `off` makes (b) a plain `model.fit(images, masks, shuffle=True)` on the
     numpy arrays and builds (a)'s train dataset with `augment=False` (no flip;
     everything else in (a) unchanged).
  3. Encoder settings: `frozen` (a MobileNetV2 no-top built with weights=None,
     saved to a temporary `.weights.h5` and passed as encoder_weights,
     train_encoder=False) and `trainable` (encoder_weights='none',
     train_encoder=True).
  4. Schedule (`--schedule`): `interleaved` (default) alternates the sides epoch
     by epoch inside (a)'s fit (a callback runs one `fit` epoch of (b) before or
     after each epoch of (a); (b)'s train function is traced once and reused),
     so what else a shared CPU runs hits both sides alike; `sequential` runs one
     whole fit after the other. Either way the first setting goes a-then-b and
     the second b-then-a.

Timing: a Keras callback records each epoch's training part, from
`on_epoch_begin` (the epoch's iterator, shuffle-buffer fill included) to
`on_test_begin` (the validation pass, excluded) or `on_epoch_end`. The first
epoch (tracing, warm-up) is dropped; images/s = train images x timed epochs /
their wall-clock seconds ("best ep": the fastest timed epoch). Also reported:
  wait s      time outside the train steps: Keras fetches each batch eagerly
              between steps, so this is time the model waited for its input.
  CPU ms/img  process CPU time over the same windows: on a shared machine it
              varies less than wall time, and shows the input pipeline's CPU.
  input pipelines alone: each side's dataset iterated without a model (one
              warm-up pass, then `--pipeline-passes` passes).

Both sides run tf.data with its autotuner off (`trainer.without_autotune`):
with it on, every epoch's new iterator idles ~4 s before its first batch, on
either side, which would hide the input pipeline's real cost.

The target is (a)/(b) >= 0.9 images/s per encoder setting; `--strict` exits 3
when one is missed. Exit status otherwise 0 (2 bad arguments).
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow loads
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))  # run as a script from anywhere
warnings.filterwarnings('ignore', category=FutureWarning)
# Keras 3 learns an unknown-cardinality dataset's length in the first epoch and
# says so once; expected for the Trainer's (finite, one-pass) datasets.
warnings.filterwarnings('ignore', message='Your input ran out of data')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging as absl_logging
import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata import metadata_store
from tfx import v1 as tfx
from tfx.components.trainer import fn_args_utils
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.types.artifact import Artifact
from tfx.utils import json_utils, proto_utils

from components import features
from components import trainer as trainer_room
from components import transform as transform_room
from components.example_gen import component as example_gen_component
from components.trainer import model as model_lib
from components.trainer import module as trainer
from components.trainer.options import TrainerOptions
from pipeline import runs
from pipeline.tools import synthetic_pets
# pylint: enable=g-import-not-at-top,wrong-import-position

SCHEMA_PATH = str(REPO / 'schemas' / 'schema.pbtxt')
PIPELINE_NAME = 'train_benchmark'
TRANSFORM = 'Transform'  # the Transform's node id
TARGET_RATIO = 0.9  # (a) images/s over (b) images/s
ENCODERS = ('frozen', 'trainable')
TRAINER = '(a) trainer'
BARE = '(b) bare'


# --- data: synthetic pets -> ExampleGen -> Transform --------------------------

def run_transform_pipeline(data_root: str, out_dir: str,
                           beam_args: List[str]) -> metadata_store.MetadataStore:
  """Runs PetExampleGen, ImportSchemaGen and Transform with LocalDagRunner.

  Args:
    data_root: an Oxford-IIIT Pet layout folder.
    out_dir: pipeline root and metadata.db go here.
    beam_args: Beam pipeline args for ExampleGen and Transform.

  Returns:
    The ML Metadata store of the run.
  """
  example_gen = example_gen_component.create_example_gen(data_root)
  schema_gen = tfx.components.ImportSchemaGen(schema_file=SCHEMA_PATH)
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=transform_room.PREPROCESSING_FN).with_id(TRANSFORM)
  connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(out_dir, 'metadata.db'))
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name=PIPELINE_NAME, pipeline_root=os.path.join(out_dir, 'tfx'),
      components=[example_gen, schema_gen, transform], enable_cache=False,
      metadata_connection_config=connection, beam_pipeline_args=beam_args))
  return runs.open_store(connection)


def trainer_input_dict(store: metadata_store.MetadataStore
                       ) -> Dict[str, List[Artifact]]:
  """The Trainer's input artifacts as the pipeline wires them, from MLMD.

  Args:
    store: the ML Metadata store of a `run_transform_pipeline` run.

  Returns:
    {'examples': [Transform's transformed_examples], 'transform_graph': [...],
     'schema': [ImportSchemaGen's schema, as Transform read it]}, from the
    newest run, as TFX artifacts.
  """
  transform = runs.read_run(
      store, runs.latest_run_id(store, PIPELINE_NAME)).nodes[TRANSFORM]

  def tfx_artifacts(mlmd_artifacts) -> List[Artifact]:
    types = {t.id: t for t in store.get_artifact_types_by_id(
        list({a.type_id for a in mlmd_artifacts}))}
    return [artifact_utils.deserialize_artifact(types[a.type_id], a)
            for a in mlmd_artifacts]

  return {
      standard_component_specs.EXAMPLES_KEY:
          tfx_artifacts(transform.outputs['transformed_examples']),
      standard_component_specs.TRANSFORM_GRAPH_KEY:
          tfx_artifacts(transform.outputs['transform_graph']),
      standard_component_specs.SCHEMA_KEY:
          tfx_artifacts(transform.inputs['schema']),
  }


def trainer_fn_args(input_dict: Dict[str, List[Artifact]],
                    options: TrainerOptions,
                    model_run_dir: str) -> fn_args_utils.FnArgs:
  """FnArgs built the way TFX's Trainer executor (`_GetFnArgs`) builds them.

  Args:
    input_dict: the Trainer's input artifacts.
    options: the Trainer's settings, put in its custom_config as the pipeline
      does.
    model_run_dir: where TensorBoard logs go.

  Returns:
    FnArgs with TFX's data accessor, train/eval file patterns and
    transform_output.
  """
  custom_config = {trainer_room.CUSTOM_CONFIG_KEY: options.to_custom_config()}
  exec_properties = {
      standard_component_specs.TRAIN_ARGS_KEY:
          proto_utils.proto_to_json(trainer_pb2.TrainArgs()),
      standard_component_specs.EVAL_ARGS_KEY:
          proto_utils.proto_to_json(trainer_pb2.EvalArgs()),
      standard_component_specs.CUSTOM_CONFIG_KEY:
          json_utils.dumps(custom_config),
  }
  fn_args = fn_args_utils.get_common_fn_args(input_dict, exec_properties)
  fn_args.transform_output = fn_args.transform_graph_path
  fn_args.model_run_dir = model_run_dir
  fn_args.schema_file = fn_args.schema_path
  return fn_args


def trainer_dataset(fn_args: fn_args_utils.FnArgs,
                    tf_transform_output: tft.TFTransformOutput, files: List[str],
                    batch_size: int, training: bool, seed: int,
                    augment: bool, cache: bool) -> tf.data.Dataset:
  """`trainer.make_dataset`; flipped when training, unless not `augment`.

  `cache` is the Trainer's `cache_examples`.
  """
  return trainer.make_dataset(fn_args, files, tf_transform_output, batch_size,
                              training=training, seed=seed, cache=cache,
                              augment=training and augment)


def read_arrays(fn_args: fn_args_utils.FnArgs,
                tf_transform_output: tft.TFTransformOutput,
                batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
  """The transformed train split as numpy arrays, through the Trainer's reader.

  Returns:
    (images uint8 [N, 128, 128, 3], masks uint8 [N, 128, 128, 1]), file order.
  """
  dataset = trainer_dataset(fn_args, tf_transform_output, fn_args.train_files,
                            batch_size, training=False, seed=0, augment=False,
                            cache=False)
  images, masks = [], []
  for image, mask in dataset:
    images.append(image.numpy())
    masks.append(mask.numpy())
  return np.concatenate(images), np.concatenate(masks)


def bare_dataset(images: np.ndarray, masks: np.ndarray, batch_size: int,
                 seed: int, augment: bool) -> tf.data.Dataset:
  """In-memory arrays, shuffled, batched, flipped if `augment`: side (b)."""
  dataset = (tf.data.Dataset.from_tensor_slices((images, masks))
             .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size))
  if augment:
    dataset = dataset.map(trainer.random_flip,
                          num_parallel_calls=tf.data.AUTOTUNE)
  return trainer.without_autotune(dataset.prefetch(tf.data.AUTOTUNE))


def pipeline_rate(make_dataset: Callable[[], tf.data.Dataset],
                  passes: int) -> Dict[str, float]:
  """Images/s and CPU ms/image of iterating a dataset alone, after a warm-up pass."""
  dataset = make_dataset()
  for _ in dataset:  # warm-up: function tracing, file cache
    pass
  count, wall, cpu = 0, 0.0, 0.0
  for _ in range(passes):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for image, _ in dataset:
      count += int(image.shape[0])
    wall += time.perf_counter() - start_wall
    cpu += time.process_time() - start_cpu
  return {'images_per_s': count / wall, 'cpu_ms_per_image': 1000 * cpu / count}


# --- timing --------------------------------------------------------------------

class EpochTimer(keras.callbacks.Callback):
  """Wall and process-CPU seconds of each epoch's training part.

  From `on_epoch_begin` to `on_test_begin` (the validation pass inside fit) or,
  without validation, `on_epoch_end`. `wait` is the part spent outside the
  train steps: Keras fetches each batch (`next(iterator)`, eagerly) between
  one step's `on_train_batch_end` and the next `on_train_batch_begin`, so this
  is the time the model waited for its input pipeline (plus callback overhead).
  """

  def __init__(self):
    super().__init__()
    self.wall: List[float] = []
    self.cpu: List[float] = []
    self.wait: List[float] = []
    self.steps: List[int] = []
    self._start: Optional[Tuple[float, float]] = None
    self._last = 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self.steps.append(0)
    self.wait.append(0.0)
    self._start = (time.perf_counter(), time.process_time())
    self._last = self._start[0]

  def on_train_batch_begin(self, batch, logs=None):
    self.wait[-1] += time.perf_counter() - self._last

  def on_train_batch_end(self, batch, logs=None):
    self.steps[-1] += 1
    self._last = time.perf_counter()

  def _stop(self):
    if self._start is not None:
      now = time.perf_counter()
      self.wait[-1] += now - self._last
      self.wall.append(now - self._start[0])
      self.cpu.append(time.process_time() - self._start[1])
      self._start = None

  def on_test_begin(self, logs=None):
    self._stop()

  def on_epoch_end(self, epoch, logs=None):
    self._stop()


def summarise(timer: EpochTimer, images_per_epoch: int) -> Dict[str, Any]:
  """Rates over the epochs after the first: mean, best epoch, CPU per image."""
  wall, cpu = timer.wall[1:], timer.cpu[1:]
  images = images_per_epoch * len(wall)
  return {'first_epoch_s': timer.wall[0], 'epoch_s': wall,
          'epoch_cpu_s': cpu, 'wait_s': timer.wait[1:],
          'steps_per_epoch': timer.steps[1],
          'images_per_s': images / sum(wall),
          'best_images_per_s': images_per_epoch / min(wall),
          'cpu_ms_per_image': 1000 * sum(cpu) / images}


# --- the two sides ---------------------------------------------------------------

class BareSide:
  """(b): the same model, compile and seed; `fit` on the in-memory arrays.

  Attributes:
    model: the U-Net, built and compiled as `trainer.train` builds it.
    timer: its EpochTimer, over every `fit` call.
  """

  def __init__(self, images: np.ndarray, masks: np.ndarray,
               options: TrainerOptions, augment: bool):
    keras.utils.set_random_seed(options.seed)
    with trainer.choose_strategy().scope():
      self.model = model_lib.build_unet(encoder_weights=options.encoder_weights,
                                        train_encoder=options.train_encoder)
      trainer.compile_model(self.model, options.learning_rate)
    self.timer = EpochTimer()
    self._dataset = bare_dataset(images, masks, options.batch_size,
                                 options.seed, augment)

  def fit(self, epochs: int, initial_epoch: int = 0) -> None:
    """`model.fit` from `initial_epoch` to `epochs`; the train function is reused."""
    self.model.fit(self._dataset, epochs=epochs, initial_epoch=initial_epoch,
                   callbacks=[self.timer], verbose=2)


class Alternate(keras.callbacks.Callback):
  """Runs one epoch of the bare side before or after each epoch of (a).

  Epochs then alternate a, b, a, b (or b, a, ...), so a change in what else the
  CPU runs hits both sides alike instead of one whole fit.
  """

  def __init__(self, bare: BareSide, before: bool):
    super().__init__()
    self._bare = bare
    self._before = before

  def _bare_epoch(self, epoch: int) -> None:
    print(f'--- {BARE}, epoch {epoch + 1}', flush=True)
    self._bare.fit(epoch + 1, initial_epoch=epoch)
    print(f'--- {TRAINER}', flush=True)

  def on_epoch_begin(self, epoch, logs=None):
    if self._before:
      self._bare_epoch(epoch)

  def on_epoch_end(self, epoch, logs=None):
    if not self._before:
      self._bare_epoch(epoch)


def train_trainer_side(fn_args: fn_args_utils.FnArgs, options: TrainerOptions,
                       augment: bool, timer: EpochTimer,
                       extra: Optional[keras.callbacks.Callback] = None,
                       extra_first: bool = False) -> None:
  """(a): `run_fn`'s steps up to the export, with the timer among the callbacks.

  Args:
    fn_args: the Trainer's FnArgs.
    options: the Trainer's settings.
    augment: keep the random flip (else none).
    timer: after the Trainer's own callbacks (`train`'s `extra_callbacks`).
    extra: one more callback (the Alternate), after the timer or, with
      `extra_first`, before it.
    extra_first: see `extra`.
  """
  keras.utils.set_random_seed(options.seed)
  strategy = trainer.choose_strategy()
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  batch_size = options.batch_size
  cache = options.cache_examples
  train_data = trainer_dataset(fn_args, tf_transform_output, fn_args.train_files,
                               batch_size, True, options.seed, augment, cache)
  eval_data = trainer_dataset(fn_args, tf_transform_output, fn_args.eval_files,
                              batch_size, False, options.seed, augment, cache)
  added = [timer] if extra is None else (
      [extra, timer] if extra_first else [timer, extra])
  trainer.train(options, train_data, eval_data, fn_args.model_run_dir, strategy,
                extra_callbacks=added)


def run_setting(fn_args: fn_args_utils.FnArgs, options: TrainerOptions,
                images: np.ndarray, masks: np.ndarray, augment: bool,
                trainer_first: bool, interleave: bool
                ) -> Dict[str, EpochTimer]:
  """Trains both sides for one encoder setting; returns their timers.

  Args:
    fn_args: the Trainer's FnArgs.
    options: the Trainer's settings (epochs, encoder, ...).
    images: the transformed train images, in memory.
    masks: their masks.
    augment: random flips on both sides.
    trainer_first: (a) before (b), else (b) before (a).
    interleave: alternate the sides epoch by epoch, else one whole fit each.
  """
  keras.backend.clear_session()
  bare = BareSide(images, masks, options, augment)
  timer = EpochTimer()
  if interleave:
    train_trainer_side(fn_args, options, augment, timer,
                       extra=Alternate(bare, before=not trainer_first),
                       extra_first=not trainer_first)
  elif trainer_first:
    train_trainer_side(fn_args, options, augment, timer)
    bare.fit(options.epochs)
  else:
    bare.fit(options.epochs)
    train_trainer_side(fn_args, options, augment, timer)
  return {TRAINER: timer, BARE: bare.timer}


def encoder_settings(work_dir: str) -> Dict[str, Dict[str, Any]]:
  """Encoder kwargs per setting; `frozen` gets a random MobileNetV2 weights file."""
  weights = os.path.join(work_dir, 'mobilenet_v2_no_top.weights.h5')
  keras.applications.MobileNetV2(
      input_shape=[features.IMAGE_SIZE, features.IMAGE_SIZE, 3],
      include_top=False, weights=None).save_weights(weights)
  keras.backend.clear_session()
  return {'frozen': {'encoder_weights': weights, 'train_encoder': False},
          'trainable': {'encoder_weights': 'none', 'train_encoder': True}}


# --- report ----------------------------------------------------------------------

def _ratios(sides: Dict[str, Dict[str, Any]]) -> Dict[str, float]:
  """(a) over (b): images/s, best-epoch images/s, and CPU ms/image inverted."""
  a, b = sides[TRAINER], sides[BARE]
  return {'images_per_s': a['images_per_s'] / b['images_per_s'],
          'best_images_per_s': a['best_images_per_s'] / b['best_images_per_s'],
          'cpu': b['cpu_ms_per_image'] / a['cpu_ms_per_image']}


def format_table(results: Dict[str, Dict[str, Dict[str, Any]]]) -> str:
  """Per encoder setting: both sides' epoch times, rates, input waits, CPU, ratios.

  The ratio row holds (a)/(b) for images/s and best-epoch images/s, and
  (b)/(a) for CPU ms per image (so that > 1 always means (a) is faster).
  """
  head = (f"{'encoder':<10}{'side':<13}{'1st ep s':>9}  {'timed epochs s':<16}"
          f"{'wait s':>7}{'images/s':>9}{'best ep':>9}{'CPU ms/img':>11}")
  lines = [head, '-' * len(head)]
  for encoder, sides in results.items():
    for side in (TRAINER, BARE):
      r = sides[side]
      epochs = ' '.join(f'{s:.1f}' for s in r['epoch_s'])
      lines.append(f"{encoder:<10}{side:<13}{r['first_epoch_s']:>9.1f}  "
                   f"{epochs:<16}{sum(r['wait_s']):>7.1f}{r['images_per_s']:>9.1f}"
                   f"{r['best_images_per_s']:>9.1f}{r['cpu_ms_per_image']:>11.1f}")
    ratio = _ratios(sides)
    marks = {k: f'{v:.2f}' + ('' if v >= TARGET_RATIO else '!')
             for k, v in ratio.items()}
    lines.append(f"{encoder:<10}{'ratio a/b':<13}{'':>9}  {'':<16}{'':>7}"
                 f"{marks['images_per_s']:>9}{marks['best_images_per_s']:>9}"
                 f"{marks['cpu']:>11}")
  lines.append('-' * len(head))
  lines.append(f'target a/b >= {TARGET_RATIO} on images/s ("!" marks a miss); '
               'CPU column ratio = b/a;')
  lines.append('wait s: timed epochs\' time outside train steps, i.e. waiting '
               'for the input pipeline')
  return '\n'.join(lines)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data',
                      help='existing Oxford-IIIT layout (default: generate)')
  parser.add_argument('--num-images', type=int, default=256,
                      help='trainval images to generate (256)')
  parser.add_argument('--num-eval', type=int, default=16,
                      help='test images to generate (16)')
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--epochs', type=int, default=3,
                      help='epochs per fit; the first is not timed (3)')
  parser.add_argument('--augment', choices=('on', 'off'), default='on',
                      help='random flips on both sides (on) or neither (off)')
  parser.add_argument('--encoders', default=','.join(ENCODERS),
                      help='comma-separated subset of frozen,trainable')
  parser.add_argument('--schedule', choices=('interleaved', 'sequential'),
                      default='interleaved',
                      help='alternate the sides epoch by epoch (default) or run '
                      'one whole fit after the other')
  parser.add_argument('--cache', choices=('on', 'off'), default='on',
                      help="(a): the Trainer's cache_examples (default on, as "
                      'the pipeline runs)')
  parser.add_argument('--pipeline-passes', type=int, default=2,
                      help='timed passes over each input pipeline alone (2)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--beam-arg', action='append',
                      default=['--direct_running_mode=in_memory'])
  parser.add_argument('--work-dir', help='keep intermediate files here; a later '
                      'run with the same dir reuses its data and Transform output')
  parser.add_argument('--json', help='also write the results to this file')
  parser.add_argument('--strict', action='store_true',
                      help='exit 3 when a ratio misses the target')
  args = parser.parse_args(argv)
  encoders = [e for e in args.encoders.split(',') if e]
  if not encoders or set(encoders) - set(ENCODERS):
    parser.error(f'--encoders: choose from {",".join(ENCODERS)}')
  if args.epochs < 2 or args.batch_size < 1 or args.num_images < 1:
    parser.error('--epochs must be >= 2 (the first is not timed), '
                 '--batch-size and --num-images >= 1')
  args.encoders = encoders
  return args


def prepare_inputs(args: argparse.Namespace, work_dir: str
                   ) -> Tuple[Dict[str, List[Artifact]], str, Optional[float]]:
  """Synthetic pets and the Transform pipeline (or those of an earlier run).

  Returns:
    (the Trainer's input artifacts, the data root, Transform seconds or None
    when a previous run's output in `work_dir` was reused).
  """
  data_root = args.data
  if not data_root and os.path.isdir(os.path.join(work_dir, 'data')):
    data_root = os.path.join(work_dir, 'data')  # an earlier --work-dir run's
  if not data_root:
    data_root = os.path.join(work_dir, 'data')
    synthetic_pets.generate(data_root, num_trainval=args.num_images,
                            num_test=args.num_eval, seed=args.seed)
  pipeline_dir = os.path.join(work_dir, 'pipeline')
  metadata_path = os.path.join(pipeline_dir, 'metadata.db')
  if os.path.exists(metadata_path):
    print(f'reusing the Transform output in {pipeline_dir}', flush=True)
    store = runs.open_store(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path))
    return trainer_input_dict(store), data_root, None
  start = time.perf_counter()
  store = run_transform_pipeline(data_root, pipeline_dir, args.beam_arg)
  return trainer_input_dict(store), data_root, time.perf_counter() - start


def main(argv: Optional[List[str]] = None) -> int:
  """Runs the benchmark; prints the table; returns the exit status."""
  args = parse_args(argv)
  absl_logging.set_verbosity(absl_logging.ERROR)
  tf.get_logger().setLevel('ERROR')
  augment = args.augment == 'on'
  interleave = args.schedule == 'interleaved'
  work_dir = args.work_dir or tempfile.mkdtemp(prefix='train_benchmark_')
  os.makedirs(work_dir, exist_ok=True)
  started = time.perf_counter()
  load_before = os.getloadavg()[0]
  try:
    input_dict, _, transform_s = prepare_inputs(args, work_dir)
    settings = encoder_settings(work_dir)
    options = {
        encoder: TrainerOptions(
            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
            cache_examples=args.cache == 'on', **settings[encoder])
        for encoder in args.encoders}
    fn_args = trainer_fn_args(input_dict, options[args.encoders[0]],
                              os.path.join(work_dir, 'logs'))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    images, masks = read_arrays(fn_args, tf_transform_output, args.batch_size)
    num_train = len(images)

    pipelines = {
        TRAINER: pipeline_rate(lambda: trainer_dataset(
            fn_args, tf_transform_output, fn_args.train_files,
            args.batch_size, True, args.seed, augment, args.cache == 'on'),
                               args.pipeline_passes),
        BARE: pipeline_rate(lambda: bare_dataset(
            images, masks, args.batch_size, args.seed, augment),
                            args.pipeline_passes),
    }

    results: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for i, encoder in enumerate(args.encoders):
      trainer_first = i % 2 == 0
      print(f'--- {encoder} encoder: ' +
            ('(a), (b)' if trainer_first else '(b), (a)') +
            (' epoch by epoch' if interleave else ''), flush=True)
      fn_args = trainer_fn_args(input_dict, options[encoder],
                                os.path.join(work_dir, 'logs', encoder))
      timers = run_setting(fn_args, options[encoder], images, masks, augment,
                           trainer_first, interleave)
      results[encoder] = {side: summarise(timers[side], num_train)
                          for side in (TRAINER, BARE)}
  finally:
    if not args.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)

  total_s = time.perf_counter() - started
  print()
  print(f'{num_train} train images ({args.num_eval} eval), batch '
        f'{args.batch_size}, {args.epochs} epochs per side (first not timed), '
        f'{args.schedule}, augmentation {args.augment} on both sides, trainer '
        f'cache {args.cache}; {os.cpu_count()} CPUs, 1-min load average '
        f'{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end')
  print('setup: ExampleGen + ImportSchemaGen + Transform ' +
        ('reused' if transform_s is None else f'{transform_s:.0f} s'))
  print('input pipelines alone: ' + '; '.join(
      f"{side} {r['images_per_s']:.0f} images/s, "
      f"{r['cpu_ms_per_image']:.1f} CPU ms/img" for side, r in pipelines.items()))
  print(format_table(results))
  print(f'total {total_s:.0f} s (imports excluded)')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'args': vars(args), 'num_train': num_train,
                 'transform_s': transform_s, 'pipelines': pipelines,
                 'results': results,
                 'ratios': {e: _ratios(r) for e, r in results.items()},
                 'total_s': total_s}, f, indent=2)
  ratios = [_ratios(r)['images_per_s'] for r in results.values()]
  return 3 if args.strict and min(ratios) < TARGET_RATIO else 0


if __name__ == '__main__':
  sys.exit(main())
