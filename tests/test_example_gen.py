"""Tests for the PetExampleGen executor: the real Oxford-IIIT Pet sample and broken input.

The executor is run the way TFX's own executor tests run theirs: an Examples artifact
with a uri in tmp_path, JSON exec properties, `Executor().Do({}, output_dict, props)`.
Each Beam run costs a few seconds, so every layout is processed once per module.
"""
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.internal import pickler as beam_pickler
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

from components import features
from components.example_gen import component, executor, records, validation
from pipeline.tools import synthetic_pets

SAMPLE_ROOT = (pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' /
               'oxford_pets_sample')
JPEG_MAGIC = b'\xff\xd8\xff'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
SPLIT_LISTS = {'train': 'trainval', 'eval': 'test'}  # split -> list file stem


# --- helpers -------------------------------------------------------------------

def run_executor(input_base, output_uri, min_valid_fraction=None):
  """Runs PetExampleGen's executor on a layout; returns the Examples artifact."""
  examples = standard_artifacts.Examples()
  examples.uri = str(output_uri)
  options = {}
  if min_valid_fraction is not None:
    options['min_valid_fraction'] = min_valid_fraction
  exec_properties = component.executor_properties(str(input_base), options)
  executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                         exec_properties)
  return examples


def read_split(examples, split):
  """All tf.Examples of one split (gzipped TFRecords under Split-<split>/)."""
  split_dir = artifact_utils.get_split_uri([examples], split)
  assert split_dir == os.path.join(examples.uri, f'Split-{split}')
  files = sorted(tf.io.gfile.glob(os.path.join(split_dir, '*.gz')))
  assert files, f'no gzipped TFRecords in {split_dir}'
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def value(example, key):
  feature = example.features.feature[key]
  if key in features.BYTES_FEATURES:
    values = list(feature.bytes_list.value)
  elif key in features.FLOAT_FEATURES:
    values = list(feature.float_list.value)
  else:
    values = list(feature.int64_list.value)
  assert len(values) == 1, (key, values)
  return values[0]


def read_list(path):
  """Entries of a list file as {name: (class_id, species, breed_id)}, in order."""
  entries = {}
  with open(path) as f:
    for line in f:
      columns = records.parse_list_line(line)
      if columns is not None:
        assert columns[0] not in entries
        entries[columns[0]] = tuple(int(c) for c in columns[1:])
  return entries


def quarantine(examples):
  return executor.read_quarantine(
      examples.get_string_custom_property(executor.QUARANTINE_URI_PROPERTY))


def encode(array, fmt, **kwargs):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kwargs)
  return buf.getvalue()


def jpeg_bytes(height=40, width=50, mode='RGB', seed=0, **kwargs):
  rng = np.random.default_rng(seed)
  rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(rgb).convert(mode).save(buf, 'JPEG', **kwargs)
  return buf.getvalue()


# --- the real sample -------------------------------------------------------------

@pytest.fixture(scope='module')
def real_run(tmp_path_factory):
  assert (SAMPLE_ROOT / 'annotations' / 'trainval.txt').is_file(), SAMPLE_ROOT
  examples = run_executor(SAMPLE_ROOT, tmp_path_factory.mktemp('real') / 'examples')
  lists = {split: read_list(SAMPLE_ROOT / 'annotations' / f'{stem}.txt')
           for split, stem in SPLIT_LISTS.items()}
  records = {split: read_split(examples, split) for split in SPLIT_LISTS}
  return examples, lists, records


def test_real_sample_counts_match_list_files(real_run):
  examples, lists, records = real_run
  assert {s: len(l) for s, l in lists.items()} == {'train': 24, 'eval': 25}
  assert examples.split_names == artifact_utils.encode_split_names(['train', 'eval'])

  rejected = quarantine(examples)
  rejected_by_split = {
      split: [r for r in rejected
              if r['list_file'] == str(SAMPLE_ROOT / 'annotations' / f'{stem}.txt')]
      for split, stem in SPLIT_LISTS.items()}
  assert sum(len(r) for r in rejected_by_split.values()) == len(rejected)
  for split, listed in lists.items():
    written = [value(e, features.FILE_NAME_KEY).decode() for e in records[split]]
    quarantined = [r['file_name'] for r in rejected_by_split[split]]
    assert len(written) == len(set(written))
    # listed = written + quarantined, exactly and name by name.
    assert len(written) + len(quarantined) == len(listed)
    assert sorted(written + quarantined) == sorted(listed)
  # Every one of the 49 real pairs is valid (Abyssinian_5 is normalised, not rejected).
  assert rejected == []
  assert {s: len(r) for s, r in records.items()} == {'train': 24, 'eval': 25}

  # The artifact's custom properties say the same.
  split_counts = json.loads(
      examples.get_string_custom_property(executor.SPLIT_COUNTS_PROPERTY))
  assert split_counts == {
      split: {'examples': len(records[split]),
              'rejected': len(rejected_by_split[split])} for split in SPLIT_LISTS}
  assert examples.get_int_custom_property(executor.NUM_REJECTED_PROPERTY) == 0
  quarantine_uri = examples.get_string_custom_property(
      executor.QUARANTINE_URI_PROPERTY)
  assert quarantine_uri == os.path.join(examples.uri, executor.QUARANTINE_DIR)
  counts = executor.read_counts(quarantine_uri)
  assert counts == {
      stem: {'list_file': str(SAMPLE_ROOT / 'annotations' / f'{stem}.txt'),
             'examples': len(records[split]), 'rejected': 0}
      for split, stem in SPLIT_LISTS.items()}
  # An (empty) quarantine file exists for each list.
  assert sorted(os.listdir(quarantine_uri)) == [
      'test.counts.json', 'test.jsonl', 'trainval.counts.json', 'trainval.jsonl']


def test_real_records_decode_and_match_list(real_run):
  _, lists, records = real_run
  for split, examples in records.items():
    for example in examples:
      name = value(example, features.FILE_NAME_KEY).decode()
      assert (value(example, features.CLASS_ID_KEY), value(example, features.SPECIES_KEY),
              value(example, features.BREED_ID_KEY)) == lists[split][name]
      height, width = value(example, features.HEIGHT_KEY), value(example, features.WIDTH_KEY)
      with Image.open(SAMPLE_ROOT / 'images' / f'{name}.jpg') as source:
        assert (height, width) == (source.height, source.width), name

      image_bytes = value(example, features.IMAGE_KEY)
      assert image_bytes.startswith(JPEG_MAGIC), name
      image = tf.io.decode_jpeg(image_bytes)  # channels=0: the stored channel count
      assert image.dtype == tf.uint8
      assert tuple(image.shape) == (height, width, 3), name

      mask_bytes = value(example, features.MASK_KEY)
      mask = tf.io.decode_png(mask_bytes)
      assert tuple(mask.shape) == (height, width, 1), name
      values = set(np.unique(mask.numpy()).tolist())
      assert values <= {1, 2, 3}, (name, values)
      assert {1, 2} <= values, (name, values)  # every real trimap has pet and background
      # Real trimaps are already one-channel PNGs: stored byte for byte.
      assert mask_bytes == (SAMPLE_ROOT / 'annotations' / 'trimaps' /
                            f'{name}.png').read_bytes(), name
      if name != 'Abyssinian_5':  # plain baseline RGB JPEGs pass through unchanged
        assert image_bytes == (SAMPLE_ROOT / 'images' / f'{name}.jpg').read_bytes(), name


def test_real_rgba_png_named_jpg_is_normalised_to_jpeg(real_run):
  _, lists, records = real_run
  source_bytes = (SAMPLE_ROOT / 'images' / 'Abyssinian_5.jpg').read_bytes()
  assert source_bytes.startswith(PNG_MAGIC)
  assert 'Abyssinian_5' in lists['eval']
  [example] = [e for e in records['eval']
               if value(e, features.FILE_NAME_KEY) == b'Abyssinian_5']
  image_bytes = value(example, features.IMAGE_KEY)
  assert image_bytes.startswith(JPEG_MAGIC)
  assert (value(example, features.HEIGHT_KEY), value(example, features.WIDTH_KEY)) == (
      150, 200)
  decoded = tf.io.decode_jpeg(image_bytes).numpy()
  assert decoded.shape == (150, 200, 3)
  # Same picture as the source's RGB channels, up to JPEG loss.
  with Image.open(io.BytesIO(source_bytes)) as source:
    assert source.mode == 'RGBA'
    expected = np.asarray(source.convert('RGB'), dtype=np.float32)
  assert np.abs(decoded.astype(np.float32) - expected).mean() < 4.0


# --- generated broken input ------------------------------------------------------

def _save(path, data):
  with open(path, 'wb') as f:
    f.write(data)


def _image_size(path):
  with Image.open(path) as img:
    return img.height, img.width


@pytest.fixture(scope='module')
def bad_run(tmp_path_factory):
  """A small synthetic layout with every kind of breakage, run once."""
  root = tmp_path_factory.mktemp('bad') / 'data'
  layout = synthetic_pets.generate(str(root), num_trainval=12, num_test=4, seed=3,
                                   min_size=48, max_size=64)
  images, trimaps = root / 'images', root / 'annotations' / 'trimaps'
  train = layout['trainval']
  (empty, truncated, no_trimap, wrong_size, value_7, gray, cmyk) = train[:7]

  _save(images / f'{empty}.jpg', b'')
  data = (images / f'{truncated}.jpg').read_bytes()
  _save(images / f'{truncated}.jpg', data[:len(data) // 2])
  (trimaps / f'{no_trimap}.png').unlink()
  height, width = _image_size(images / f'{wrong_size}.jpg')
  _save(trimaps / f'{wrong_size}.png',
        encode(np.full((height + 1, width), 2, np.uint8), 'PNG'))
  tri = np.asarray(Image.open(trimaps / f'{value_7}.png')).copy()
  tri[0, 0] = 7
  _save(trimaps / f'{value_7}.png', encode(tri, 'PNG'))
  for name, mode in ((gray, 'L'), (cmyk, 'CMYK')):
    with Image.open(images / f'{name}.jpg') as img:
      converted = img.convert(mode)
    buf = io.BytesIO()
    converted.save(buf, 'JPEG', quality=95)
    _save(images / f'{name}.jpg', buf.getvalue())
    with Image.open(images / f'{name}.jpg') as img:
      assert img.mode == mode

  # test.txt: a comment and a blank line in the middle, an entry with no files and
  # a malformed line at the end.
  test_list = root / 'annotations' / 'test.txt'
  lines = test_list.read_text().splitlines()
  assert sum(not l.startswith('#') for l in lines) == 4
  lines.insert(len(lines) - 2, '# a comment in the middle of the list')
  lines.insert(len(lines) - 2, '')
  lines += ['Ghost_1 1 1 1', 'Broken_1 6 one 2']
  test_list.write_text('\n'.join(lines) + '\n')

  examples = run_executor(root, tmp_path_factory.mktemp('bad_out') / 'examples',
                          min_valid_fraction=0.5)
  trainval_txt = str(root / 'annotations' / 'trainval.txt')
  test_txt = str(test_list)
  expected = {  # file_name -> (list file, entry, reason substrings)
      empty: (trainval_txt, None, ['image file is empty (0 bytes)']),
      truncated: (trainval_txt, None, ['image cannot be decoded', 'truncated']),
      no_trimap: (trainval_txt, None,
                  ['missing file', os.path.join('annotations', 'trimaps',
                                                f'{no_trimap}.png')]),
      wrong_size: (trainval_txt, None, [
          f'trimap is {width}x{height + 1} but the image is {width}x{height}']),
      value_7: (trainval_txt, None, ['trimap has values [7] outside [1, 2, 3]']),
      'Ghost_1': (test_txt, 'Ghost_1 1 1 1',
                  ['missing file', os.path.join('images', 'Ghost_1.jpg')]),
      'Broken_1': (test_txt, 'Broken_1 6 one 2', ['malformed list entry']),
  }
  return examples, layout, expected, (gray, cmyk)


def test_bad_input_quarantine_records_exact(bad_run):
  examples, _, expected, _ = bad_run
  records = quarantine(examples)
  assert sorted(r['file_name'] for r in records) == sorted(expected)
  for record in records:
    list_file, entry, reasons = expected[record['file_name']]
    assert record['list_file'] == list_file
    if entry is not None:
      assert record['entry'] == entry
    else:
      assert record['entry'].split()[0] == record['file_name']
    for reason in reasons:
      assert reason in record['reason'], (record, reason)


def test_bad_input_exact_counts(bad_run):
  examples, layout, expected, (gray, cmyk) = bad_run
  bad = set(expected)
  written = {split: [value(e, features.FILE_NAME_KEY).decode()
                     for e in read_split(examples, split)] for split in SPLIT_LISTS}
  # train: 12 listed, 5 rejected; eval: 4 valid + Ghost_1 + Broken_1 listed (the
  # comment and the blank line are not entries).
  assert sorted(written['train']) == sorted(n for n in layout['trainval'] if n not in bad)
  assert sorted(written['eval']) == sorted(layout['test'])
  assert gray in written['train'] and cmyk in written['train']
  assert json.loads(examples.get_string_custom_property(
      executor.SPLIT_COUNTS_PROPERTY)) == {
          'train': {'examples': 7, 'rejected': 5},
          'eval': {'examples': 4, 'rejected': 2}}
  assert examples.get_int_custom_property(executor.NUM_REJECTED_PROPERTY) == 7
  counts = executor.read_counts(
      examples.get_string_custom_property(executor.QUARANTINE_URI_PROPERTY))
  assert {k: (v['examples'], v['rejected']) for k, v in counts.items()} == {
      'trainval': (7, 5), 'test': (4, 2)}


def test_bad_input_grayscale_and_cmyk_are_normalised(bad_run):
  examples, layout, _, (gray, cmyk) = bad_run
  root = pathlib.Path(layout['root'])
  by_name = {value(e, features.FILE_NAME_KEY).decode(): e
             for e in read_split(examples, 'train')}
  for name, mode in ((gray, 'L'), (cmyk, 'CMYK')):
    example = by_name[name]
    source = (root / 'images' / f'{name}.jpg').read_bytes()
    image_bytes = value(example, features.IMAGE_KEY)
    assert image_bytes != source, name  # re-encoded, not passed through
    assert image_bytes.startswith(JPEG_MAGIC)
    with Image.open(io.BytesIO(image_bytes)) as img:
      assert (img.format, img.mode) == ('JPEG', 'RGB'), name
    decoded = tf.io.decode_jpeg(image_bytes)  # stored channel count
    height, width = _image_size(root / 'images' / f'{name}.jpg')
    assert tuple(decoded.shape) == (height, width, 3), name
    assert (value(example, features.HEIGHT_KEY),
            value(example, features.WIDTH_KEY)) == (height, width)
    with Image.open(io.BytesIO(source)) as img:
      assert img.mode == mode, name
      expected = np.asarray(img.convert('RGB'), dtype=np.float32)
    assert np.abs(decoded.numpy().astype(np.float32) - expected).mean() < 4.0, name
    mask = tf.io.decode_png(value(example, features.MASK_KEY))
    assert tuple(mask.shape) == (height, width, 1)


# --- failure modes ---------------------------------------------------------------

def test_all_entries_bad_raises_no_valid_examples(tmp_path):
  root = tmp_path / 'data'
  layout = synthetic_pets.generate(str(root), num_trainval=2, num_test=1,
                                   min_size=40, max_size=48)
  for name in layout['trainval'] + layout['test']:
    _save(root / 'images' / f'{name}.jpg', b'')
  out = tmp_path / 'examples'
  with pytest.raises(ValueError) as info:
    run_executor(root, out)
  # One line naming every split that has no valid example.
  quarantine_dir = out / executor.QUARANTINE_DIR
  assert str(info.value) == (
      "split 'train' (annotations/trainval.txt) has no valid examples: 2 listed, "
      f"2 rejected (reasons in {quarantine_dir / 'trainval.jsonl'}); "
      "split 'eval' (annotations/test.txt) has no valid examples: 1 listed, "
      f"1 rejected (reasons in {quarantine_dir / 'test.jsonl'})")
  records = executor.read_quarantine(str(quarantine_dir))
  assert sorted(r['file_name'] for r in records) == sorted(
      layout['trainval'] + layout['test'])
  assert all('empty (0 bytes)' in r['reason'] for r in records)


def test_valid_fraction_below_minimum_raises(tmp_path):
  root = tmp_path / 'data'
  layout = synthetic_pets.generate(str(root), num_trainval=2, num_test=2,
                                   min_size=40, max_size=48)
  (root / 'annotations' / 'trimaps' / f'{layout["test"][0]}.png').unlink()
  out = tmp_path / 'examples'
  # 3 of 4 valid: 0.75 < 0.8 (and each split keeps a valid example).
  with pytest.raises(ValueError, match='minimum valid fraction') as info:
    run_executor(root, out, min_valid_fraction=0.8)
  assert 'only 3 of 4 listed pairs are valid' in str(info.value)
  assert '0.8' in str(info.value)


def test_output_formats_other_than_gzip_tf_examples_are_refused(tmp_path):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  exec_properties = component.executor_properties(str(SAMPLE_ROOT))
  exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY] = (
      example_gen_pb2.FORMAT_PARQUET)
  with pytest.raises(ValueError, match='tf.Examples in GZIP TFRecords only; '
                     'got payload format FORMAT_PARQUET'):
    executor.Executor().Do(
        {}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
  assert not (tmp_path / 'examples').exists()


# --- pure helpers ----------------------------------------------------------------

def test_parse_list_line():
  assert records.parse_list_line('Abyssinian_100 1 1 1\n') == [
      'Abyssinian_100', '1', '1', '1']
  assert records.parse_list_line('  Bengal_5\t6  1 2 \r\n') == ['Bengal_5', '6', '1', '2']
  assert records.parse_list_line('#Image CLASS-ID SPECIES BREED ID') is None
  assert records.parse_list_line('   # indented comment') is None
  assert records.parse_list_line('') is None
  assert records.parse_list_line(' \t\n') is None
  assert records.parse_list_line('a b') == ['a', 'b']  # make_record judges the columns


@pytest.mark.parametrize('columns', [
    ['Abyssinian_1', '1', '1'], ['Abyssinian_1', '1', '1', '1', '1'],
    ['Abyssinian_1', '1', 'cat', '1'], ['Abyssinian_1', '-1', '1', '1']])
def test_make_record_rejects_malformed_entries(columns, tmp_path):
  with pytest.raises(validation.BadInput, match='malformed list entry'):
    records.make_record(str(tmp_path), columns)


@pytest.mark.parametrize('values', [
    {'image': b'\xff\xd8\xff' + bytes(range(256)) * 3, 'name': b'', 'h': 0,
     'w': 500, 'big': 2**62 + 5, 'negative': -3},
    {features.FILE_NAME_KEY: b'Abyssinian_100', features.CLASS_ID_KEY: 1,
     features.BRIGHTNESS_KEY: 0.123456789, features.ASPECT_RATIO_KEY: 4 / 3,
     'zero': 0.0, 'tiny': -1e-30}])
def test_encode_example_matches_tensorflow_bytes(values):
  expected = tf.train.Example(features=tf.train.Features(feature={
      key: (tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
            if isinstance(v, bytes) else
            tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
            if isinstance(v, float) else
            tf.train.Feature(int64_list=tf.train.Int64List(value=[v])))
      for key, v in values.items()}))
  encoded = records.encode_example(values)
  assert encoded == expected.SerializeToString(deterministic=True)
  assert tf.train.Example.FromString(encoded) == expected


# Runs in a fresh interpreter, as a multi-process Beam SDK worker does: unpickle
# the executor's DoFn, turn one list line into a record, report what got imported.
_WORKER_SCRIPT = """
import json, sys
from apache_beam.internal import pickler
fn = pickler.loads(sys.stdin.buffer.read())
out = list(fn.process(sys.argv[1]))
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tfx'))
print(json.dumps({'types': [type(o).__name__ for o in out], 'heavy': heavy}))
sys.stdout.flush()
sys.stdout.buffer.write(out[0])
"""


def test_worker_dofn_imports_no_tensorflow_or_tfx():
  list_file = SAMPLE_ROOT / 'annotations' / 'trainval.txt'
  line = next(l for l in list_file.read_text().splitlines()
              if records.parse_list_line(l))
  fn = records.ToRecordFn(str(SAMPLE_ROOT), str(list_file))
  proc = subprocess.run(
      [sys.executable, '-c', _WORKER_SCRIPT, line],
      input=beam_pickler.dumps(fn), capture_output=True, check=True,
      env=dict(os.environ, PYTHONWARNINGS='ignore'))
  report, record = proc.stdout.split(b'\n', 1)
  assert json.loads(report) == {'types': ['bytes'], 'heavy': []}
  example = tf.train.Example.FromString(record)
  assert value(example, features.FILE_NAME_KEY) == line.split()[0].encode()
  assert value(example, features.IMAGE_KEY).startswith(JPEG_MAGIC)


def test_normalise_image():
  plain = jpeg_bytes(30, 20)
  assert validation.normalise_image(plain) == (plain, 30, 20, '')

  rgba = np.dstack([np.full((10, 12, 3), 200, np.uint8), np.full((10, 12), 9, np.uint8)])
  out, height, width, note = validation.normalise_image(encode(rgba, 'PNG'))
  assert (height, width) == (10, 12)
  assert out.startswith(JPEG_MAGIC) and 'PNG RGBA' in note
  assert np.abs(np.asarray(Image.open(io.BytesIO(out)), np.int32) - 200).max() <= 2

  for mode in ('L', 'CMYK'):
    out, height, width, note = validation.normalise_image(jpeg_bytes(16, 24, mode))
    assert (height, width) == (16, 24) and f'JPEG {mode}' in note
    assert tuple(tf.io.decode_jpeg(out).shape) == (16, 24, 3)

  progressive = jpeg_bytes(16, 16, progressive=True)
  out, _, _, note = validation.normalise_image(progressive)
  assert out != progressive and note
  with Image.open(io.BytesIO(out)) as img:
    assert not img.info.get('progressive')

  with pytest.raises(validation.BadInput, match=r'image file is empty \(0 bytes\)'):
    validation.normalise_image(b'')
  with pytest.raises(validation.BadInput, match='image cannot be decoded'):
    validation.normalise_image(b'not an image at all')
  with pytest.raises(validation.BadInput, match='image cannot be decoded'):
    validation.normalise_image(plain[:len(plain) // 2])


# A real JPEG cut just before its end-of-image marker (FF D9) decodes completely
# in PIL but tf.io.decode_jpeg rejects it ("Invalid JPEG data or crop window"):
# passed through as is, one such file would crash Transform. Of the 48 real
# JPEGs, these three show it; normalise_image must re-encode (or reject) them.
@pytest.mark.parametrize('name', ['Abyssinian_100', 'Bengal_102', 'Bengal_104'])
def test_normalised_image_always_decodes_in_tf_even_without_eoi_marker(name):
  data = (SAMPLE_ROOT / 'images' / f'{name}.jpg').read_bytes()
  assert data.startswith(JPEG_MAGIC) and data.endswith(b'\xff\xd9')
  truncated = data[:-2]
  try:
    out, height, width, _ = validation.normalise_image(truncated)
  except validation.BadInput:
    return  # rejecting the truncated file keeps the contract too
  assert tuple(tf.io.decode_jpeg(out).shape) == (height, width, 3)


def test_validate_trimap():
  tri = np.array([[1, 2, 3], [3, 2, 1]], np.uint8)
  png = encode(tri, 'PNG')
  assert validation.validate_trimap(png, 2, 3) == png  # one-channel PNG: unchanged

  # Other one-channel encodings come back as an 'L' PNG with the same values.
  for data in (encode(tri.astype(np.uint16), 'PNG'), encode(tri, 'BMP')):
    out = validation.validate_trimap(data, 2, 3)
    assert out.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(out)) as img:
      assert img.mode == 'L'
      np.testing.assert_array_equal(np.asarray(img), tri)

  with pytest.raises(validation.BadInput, match='trimap is 3x2 but the image is 2x3'):
    validation.validate_trimap(png, 3, 2)
  for bad_value in (0, 4, 7):
    bad = tri.copy()
    bad[1, 1] = bad_value
    with pytest.raises(validation.BadInput,
                       match=rf'trimap has values \[{bad_value}\] outside \[1, 2, 3\]'):
      validation.validate_trimap(encode(bad, 'PNG'), 2, 3)
  with pytest.raises(validation.BadInput, match='mode RGB'):
    validation.validate_trimap(encode(np.dstack([tri] * 3), 'PNG'), 2, 3)
  with pytest.raises(validation.BadInput, match=r'trimap file is empty'):
    validation.validate_trimap(b'', 2, 3)
  with pytest.raises(validation.BadInput, match='trimap cannot be decoded'):
    validation.validate_trimap(png[:20], 2, 3)
