"""Serving throughput: the `serving_image_bytes` signature vs. the bare Keras model.

  python benchmarks/serving_benchmark.py [--model DIR] [--images DIR]

Both sides run the same weights at the same batch sizes in one process:
  serving  the SavedModel signature on encoded JPEG/PNG bytes: decode, resize,
           model, softmax, class masks resized back to each image's own size.
  keras    the Keras model (rebuilt with the exported weights) on images already
           decoded and resized to 128x128, compiled with tf.function: the
           fastest way to call it, so the ratio is the full cost of serving.
Each call's outputs are fetched to numpy. Warm-up calls (tracing) are not
timed, and the two sides take turns call by call so drift hits both alike.

--model is a SavedModel or a pipeline output dir (its newest pushed model);
without it a U-Net with random weights is exported the Trainer's way, with a
Transform graph made by tf.Transform from one synthetic example (~30 s).
Images default to the shared real Oxford-IIIT sample (~500 px photos).
"""
import argparse
import gc
import os
import pathlib
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script (make benchmarks) from anywhere
# pylint: disable=g-import-not-at-top,wrong-import-position
from tests import kit
# pylint: enable=g-import-not-at-top,wrong-import-position

REAL_IMAGES = kit.REAL_SAMPLE / 'images'
SCHEMA = REPO / 'schemas' / 'schema.pbtxt'

BATCH_SIZES = (1, 32)
CALLS = {1: 160, 32: 16}  # timed calls per side: ~70 s per run with imports and build
WARMUP_CALLS = 3
TARGET_RATIO = 0.8  # serving images/s over keras images/s at batch 32


def build_random_model(work_dir: str) -> str:
  """Exports a random-weight U-Net with a real Transform graph; returns its dir."""
  # pylint: disable=g-import-not-at-top
  import apache_beam as beam
  import keras
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
  from tfx.utils import io_utils
  from components import features
  from components.trainer import export
  from components.trainer import model as model_lib
  from components.transform import module as transform
  # pylint: enable=g-import-not-at-top

  # preprocessing_fn has no analyzers: one example is enough to build its graph.
  example = {features.IMAGE_KEY: [kit.encode(np.zeros((64, 64, 3), np.uint8), 'JPEG')],
             features.MASK_KEY: [kit.encode(np.ones((64, 64), np.uint8), 'PNG')],
             features.FILE_NAME_KEY: [b'synthetic']}
  example.update({key: [1] for key in features.INT_FEATURES})
  example.update({key: [0.5] for key in features.FLOAT_FEATURES})
  example[features.BREED_KEY] = [b'synthetic']
  metadata = dataset_metadata.DatasetMetadata(io_utils.SchemaReader().read(str(SCHEMA)))
  tft_dir = os.path.join(work_dir, 'transform_graph')
  with beam.Pipeline() as p, tft_beam.Context(temp_dir=os.path.join(work_dir, 'tmp')):
    _ = ((p | beam.Create([example]), metadata)
         | tft_beam.AnalyzeDataset(transform.preprocessing_fn)
         | tft_beam.WriteTransformFn(tft_dir))
  # The export reads the raw schema from the Transform output, as in the pipeline.
  metadata_io.write_metadata(
      metadata, os.path.join(tft_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
  keras.utils.set_random_seed(0)
  model_dir = os.path.join(work_dir, 'model')
  export.export_serving_model(model_lib.build_unet(), tft.TFTransformOutput(tft_dir),
                              model_dir)
  return model_dir


def load_images(folder: pathlib.Path) -> List[bytes]:
  return [p.read_bytes() for p in sorted(folder.iterdir())
          if p.suffix.lower() in ('.jpg', '.jpeg', '.png')]


def synthetic_images(work_dir: str) -> List[bytes]:
  from pipeline.tools import synthetic_pets  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(work_dir) / 'pets'
  synthetic_pets.generate(root, num_trainval=32, num_test=0, seed=0)
  return load_images(root / 'images')


def batches_of(items: List, size: int, count: int) -> List[List]:
  """`count` batches cycling through `items`, so consecutive calls differ."""
  return [[items[(i * size + j) % len(items)] for j in range(size)]
          for i in range(count)]


def _seconds(fn: Callable, x) -> float:
  start = time.perf_counter()
  fn(x)
  return time.perf_counter() - start


def measure(sides: Dict[str, Callable], inputs: Dict[str, Dict[int, List]]):
  """{(side, batch): [seconds per call]}, warm-up calls dropped.

  The sides take turns call by call (first one, then the other), so a burst
  of load from elsewhere on the machine slows both alike.
  """
  for side, fn in sides.items():
    for batch in BATCH_SIZES:
      for x in inputs[side][batch][:WARMUP_CALLS]:
        fn(x)
  seconds = {(side, batch): [] for side in sides for batch in BATCH_SIZES}
  for batch in BATCH_SIZES:
    for i in range(CALLS[batch]):
      order = list(sides) if i % 2 == 0 else list(reversed(sides))
      for side in order:
        seconds[side, batch].append(_seconds(sides[side], inputs[side][batch][i]))
  return seconds


def report(seconds, model_dir: str, num_images: int) -> None:
  """Prints images/s, the serving/keras ratio and batch-1 latency percentiles.

  `ratio` is total serving images/s over total keras images/s. `paired` is
  the median over adjacent call pairs of keras time / serving time: a load
  burst from elsewhere on the machine moves it far less.
  """
  calls = ', '.join(f'{n} at batch {b}' for b, n in CALLS.items())
  print(f'\nmodel: {model_dir}\nimages: {num_images} distinct; timed calls per side: '
        f'{calls}\n')
  print(f"{'batch':>5}  {'serving img/s':>13}  {'keras img/s':>11}  {'ratio':>5}  "
        f"{'paired':>6}")
  ratios = {}
  for batch in BATCH_SIZES:
    serving, keras = np.asarray(seconds['serving', batch]), np.asarray(seconds['keras', batch])
    ratios[batch] = keras.sum() / serving.sum()
    print(f'{batch:>5}  {batch * len(serving) / serving.sum():>13.1f}  '
          f'{batch * len(keras) / keras.sum():>11.1f}  {ratios[batch]:>5.2f}  '
          f'{np.median(keras / serving):>6.2f}')
  print('\nlatency at batch 1 (ms):')
  for side in ('serving', 'keras'):
    ms = 1000 * np.asarray(seconds[side, 1])
    print(f'  {side:<8} p50 {np.percentile(ms, 50):6.1f}   p95 {np.percentile(ms, 95):6.1f}')
  verdict = 'meets' if ratios[32] >= TARGET_RATIO else 'MISSES'
  print(f'\nbatch-32 ratio {ratios[32]:.2f} {verdict} the {TARGET_RATIO}x target '
        f'({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})')


def run(model_dir: str, encoded: List[bytes]) -> None:
  """Loads both sides from model_dir, measures them on `encoded`, prints."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from components import features
  from components.trainer import export
  from components.transform import module as transform
  # pylint: enable=g-import-not-at-top
  loaded = tf.saved_model.load(model_dir)  # kept: it owns the signature's variables
  signature = loaded.signatures[export.IMAGE_BYTES_SIGNATURE]
  model = export.load_keras_model(model_dir)
  keras_call = tf.function(lambda x: model(x, training=False))
  decoded = [transform.decode_image(tf.constant(b)) for b in encoded]
  sides = {
      'serving': lambda batch: signature(**{export.IMAGE_BYTES_KEY: batch})[
          features.CLASS_MASK_KEY].numpy(),
      'keras': lambda batch: keras_call(batch).numpy(),
  }
  # Input tensors are built before timing, on both sides.
  inputs = {'serving': {b: [tf.constant(x) for x in batches_of(encoded, b, CALLS[b])]
                        for b in BATCH_SIZES},
            'keras': {b: [tf.stack(x) for x in batches_of(decoded, b, CALLS[b])]
                      for b in BATCH_SIZES}}
  report(measure(sides, inputs), model_dir, len(encoded))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', help='SavedModel or pipeline output dir (default: build one)')
  p.add_argument('--images', type=pathlib.Path, default=REAL_IMAGES,
                 help='folder of JPEG/PNG images (default: the shared real sample)')
  args = p.parse_args(argv)
  from pipeline.tools import predict  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix='serving_benchmark_') as work_dir:
    try:
      model_dir = (predict.resolve_model_dir(args.model) if args.model
                   else build_random_model(work_dir))
    except predict.UsageError as e:
      print(f'serving_benchmark: {e}', file=sys.stderr)
      return 2
    encoded = (load_images(args.images) if args.images.is_dir()
               else synthetic_images(work_dir))
    run(model_dir, encoded)
  gc.collect()  # frees TF functions while TF is alive (else noise at exit)
  return 0


if __name__ == '__main__':
  sys.exit(main())
