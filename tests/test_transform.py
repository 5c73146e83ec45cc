"""Tests for components.transform.preprocessing_fn on real pet examples.

Raw examples are built by the ExampleGen's own `records.make_record` from the real
Oxford-IIIT Pet sample and parsed with the feature spec of schemas/schema.pbtxt,
exactly as Transform sees them: dense [B, 1] bytes tensors.
"""
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
from tfx.utils import io_utils

from components import features
from tests import kit
from components.transform import module as transform
from components.example_gen import records

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_ROOT = (pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' /
               'oxford_pets_sample')
SCHEMA_PATH = REPO_ROOT / 'schemas' / 'schema.pbtxt'
# Different sizes and breeds, plus Abyssinian_5 (an RGBA PNG the ExampleGen normalises).
ENTRIES = ('Abyssinian_100 1 1 1', 'american_bulldog_101 2 2 1', 'Bengal_192 6 1 2',
           'Abyssinian_5 1 1 1')
SIZE = features.IMAGE_SIZE


_encode = kit.encode


@pytest.fixture(scope='module')
def schema():
  return io_utils.SchemaReader().read(str(SCHEMA_PATH))


@pytest.fixture(scope='module')
def feature_spec(schema):
  spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  assert spec[features.IMAGE_KEY] == tf.io.FixedLenFeature([1], tf.string)
  assert spec[features.MASK_KEY] == tf.io.FixedLenFeature([1], tf.string)
  return spec


@pytest.fixture(scope='module')
def serialized():
  return [records.make_record(str(SAMPLE_ROOT), entry.split())
          for entry in ENTRIES]


@pytest.fixture(scope='module')
def parsed(serialized, feature_spec):
  batch = tf.io.parse_example(tf.constant(serialized), feature_spec)
  assert batch[features.IMAGE_KEY].shape == (len(ENTRIES), 1)
  return batch


@pytest.fixture(scope='module')
def transformed(parsed):
  return {k: v.numpy() for k, v in transform.preprocessing_fn(parsed).items()}


def _raw(parsed, key):
  return [row[0] for row in parsed[key].numpy()]


def _batch(images, masks):
  """A [B, 1] raw batch as parse_example would give it."""
  return {features.IMAGE_KEY: tf.constant([[i] for i in images]),
          features.MASK_KEY: tf.constant([[m] for m in masks])}


def test_output_keys_shapes_and_dtypes(transformed):
  batch = len(ENTRIES)
  assert set(transformed) == {features.IMAGE_XF_KEY, features.MASK_XF_KEY}
  image, mask = transformed[features.IMAGE_XF_KEY], transformed[features.MASK_XF_KEY]
  # int64 (what TFT writes) holding 8-bit pixels: the model scales them.
  assert image.dtype == np.int64 and image.shape == (batch, SIZE, SIZE, 3)
  assert mask.dtype == np.int64 and mask.shape == (batch, SIZE, SIZE, 1)
  assert image.min() >= 0 and image.max() <= 255
  # Real photos use most of the range: pixels, not values already scaled.
  assert image.min() < 25 and image.max() > 230
  assert set(np.unique(mask).tolist()) <= {0, 1, 2}


def test_image_path_matches_decode_image_one_by_one(parsed, transformed):
  images = _raw(parsed, features.IMAGE_KEY)
  for i, encoded in enumerate(images):
    one = transform.decode_image(tf.constant(encoded)).numpy()
    assert one.shape == (SIZE, SIZE, 3) and one.dtype == np.uint8
    np.testing.assert_array_equal(transformed[features.IMAGE_XF_KEY][i], one)
    # Independent check: a bilinear resize keeps the mean colour of the photo.
    original = tf.io.decode_jpeg(encoded).numpy().astype(np.float64)
    np.testing.assert_allclose(one.mean(axis=(0, 1)), original.mean(axis=(0, 1)),
                               atol=4)
    # Rounding, not truncation: within half a level of the float resize.
    exact = tf.image.resize(tf.io.decode_jpeg(encoded), [SIZE, SIZE]).numpy()
    assert np.abs(one - exact).max() <= 0.5 + 1e-3


def test_image_scaling_end_points():
  black = _encode(np.zeros((40, 30, 3), np.uint8), 'PNG')
  white = _encode(np.full((40, 30, 3), 255, np.uint8), 'PNG')
  grey = _encode(np.full((40, 30, 3), 51, np.uint8), 'PNG')
  mask = _encode(np.ones((40, 30), np.uint8), 'PNG')
  out = transform.preprocessing_fn(_batch([black, white, grey], [mask] * 3))
  image = out[features.IMAGE_XF_KEY].numpy()
  np.testing.assert_array_equal(image[0], 0)
  np.testing.assert_array_equal(image[1], 255)
  np.testing.assert_array_equal(image[2], 51)
  np.testing.assert_array_equal(out[features.MASK_XF_KEY].numpy(), features.PET)


def test_real_mask_values_survive_nearest_resize(parsed, transformed):
  masks = _raw(parsed, features.MASK_KEY)
  for i, encoded in enumerate(masks):
    original = tf.io.decode_png(encoded).numpy()
    resized = transformed[features.MASK_XF_KEY][i]
    before = set(np.unique(original).tolist())
    after = set(np.unique(resized).tolist())
    assert after <= {v - 1 for v in before}, (ENTRIES[i], before, after)
    assert {features.PET, features.BACKGROUND} <= after, ENTRIES[i]
    # Class proportions survive the resize (no class created or wiped out).
    for v in before:
      frac_before = (original == v).mean()
      frac_after = (resized == v - 1).mean()
      assert abs(frac_before - frac_after) < 0.03, (ENTRIES[i], v)
    np.testing.assert_array_equal(resized, transform.decode_mask(encoded).numpy())
    # Exactly TF's nearest sample (half-pixel centres, float32 scale) of the original.
    rows, cols = _nearest_source(original.shape[0]), _nearest_source(original.shape[1])
    np.testing.assert_array_equal(resized[:, :, 0],
                                  original[:, :, 0][np.ix_(rows, cols)].astype(np.int64) - 1)


def _nearest_source(n_in):
  """Source index of each output pixel: floor((dst + 0.5) * n_in / 128), clamped."""
  scale = np.float32(n_in) / np.float32(SIZE)
  src = np.floor((np.arange(SIZE, dtype=np.float32) + np.float32(0.5)) * scale)
  return np.minimum(src.astype(int), n_in - 1)


def _pattern_cases():
  """(name, trimap with values 1..3, expected class ids at 128x128)."""
  cases = []
  # Hard checkerboard of 2x2 cells at 256: each output pixel lies inside one cell.
  yy, xx = np.mgrid[:256, :256]
  board = (1 + (yy // 2 + xx // 2) % 3).astype(np.uint8)
  y, x = np.mgrid[:SIZE, :SIZE]
  cases.append(('checkerboard_256', board, (y + x) % 3))
  # One-pixel diagonal stripes at 256, a one-pixel checker at 384 and 3-pixel
  # vertical stripes at 384: the expected result is TF's nearest sample,
  # src = floor((dst + 0.5) * scale) (half-pixel centres).
  for name, scale, fn in (
      ('stripes_256', 2, lambda i, j: 1 + (i + j) % 3),
      ('checker_384', 3, lambda i, j: 1 + i % 2 + j % 2),
      ('vertical_stripes_384', 3, lambda i, j: 1 + (j // 3) % 3 + 0 * i)):
    n = SIZE * scale
    ii, jj = np.mgrid[:n, :n]
    trimap = fn(ii, jj).astype(np.uint8)
    src = np.arange(SIZE) * scale + scale // 2  # = floor((dst + 0.5) * scale)
    assert np.array_equal(src, _nearest_source(n))
    cases.append((name, trimap, trimap[np.ix_(src, src)].astype(np.int64) - 1))
  return cases


@pytest.mark.parametrize('name,trimap,expected', _pattern_cases(),
                         ids=[c[0] for c in _pattern_cases()])
def test_hard_patterns_resize_to_exact_subsample(name, trimap, expected):
  assert set(np.unique(trimap).tolist()) == {1, 2, 3}
  # The expected result must itself be a non-trivial pattern.
  assert len(np.unique(expected)) >= 2
  n = trimap.shape[0]
  image = _encode(np.full((n, n, 3), 128, np.uint8), 'JPEG')
  out = transform.preprocessing_fn(_batch([image], [_encode(trimap, 'PNG')]))
  mask = out[features.MASK_XF_KEY].numpy()
  assert mask.shape == (1, SIZE, SIZE, 1) and mask.dtype == np.int64
  assert set(np.unique(mask).tolist()) <= {0, 1, 2}, name
  np.testing.assert_array_equal(mask[0, :, :, 0], expected, err_msg=name)


def test_preprocessing_fn_on_beam_with_tf_transform(tmp_path, schema, serialized,
                                                   transformed):
  spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  raw_metadata = dataset_metadata.DatasetMetadata(schema)
  instances = []
  for record in serialized:
    example = tf.train.Example.FromString(record)
    instance = {}
    for key in spec:
      feature = example.features.feature[key]
      instance[key] = list(feature.bytes_list.value if key in features.BYTES_FEATURES
                           else feature.float_list.value if key in features.FLOAT_FEATURES
                           else feature.int64_list.value)
    instances.append(instance)

  with tft_beam.Context(temp_dir=str(tmp_path)):
    (data, metadata), _ = (
        (instances, raw_metadata)
        | tft_beam.AnalyzeAndTransformDataset(transform.preprocessing_fn))

  out_spec = schema_utils.schema_as_feature_spec(metadata.schema).feature_spec
  assert out_spec == {
      features.IMAGE_XF_KEY: tf.io.FixedLenFeature([SIZE, SIZE, 3], tf.int64),
      features.MASK_XF_KEY: tf.io.FixedLenFeature([SIZE, SIZE, 1], tf.int64)}
  assert len(data) == len(ENTRIES)
  by_name = {}
  for row in data:
    image = np.asarray(row[features.IMAGE_XF_KEY])
    mask = np.asarray(row[features.MASK_XF_KEY])
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.int64
    assert mask.shape == (SIZE, SIZE, 1) and mask.dtype == np.int64
    assert 0 <= image.min() and image.max() <= 255
    assert set(np.unique(mask).tolist()) <= {0, 1, 2}
    by_name[image.tobytes()] = mask
  # Beam's results are the eager results (order may differ).
  for i in range(len(ENTRIES)):
    eager_image = transformed[features.IMAGE_XF_KEY][i]
    matches = [k for k in by_name
               if np.array_equal(np.frombuffer(k, np.int64).reshape(eager_image.shape),
                                 eager_image)]
    assert len(matches) == 1, ENTRIES[i]
    np.testing.assert_array_equal(by_name[matches[0]],
                                  transformed[features.MASK_XF_KEY][i])
