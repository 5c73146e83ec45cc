"""Hostile and unusual input to the PetExampleGen: names, sizes, modes, list files, caching.

Every input becomes a valid example or a quarantine record with a reason; nothing
is read outside `<root>/images` and `<root>/annotations/trimaps`; a run that
cannot produce a usable split fails in the ExampleGen, keeping its reasons.

The property-based test at the end runs 200 derandomised examples by default;
`PETS_FUZZ_EXAMPLES=20000` runs that many with a random seed.
"""
import io
import json
import os
import re
import struct
import time
import warnings
import zlib
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings, strategies as st
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx import v1 as tfx
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import features
from components.example_gen import component, driver, executor, records, validation
from components.example_gen.options import ExampleGenOptions
from pipeline.tools import synthetic_pets

BOM = '\ufeff'


# --- helpers -------------------------------------------------------------------

def _save(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)


def _encode(img, fmt, **kwargs):
  buf = io.BytesIO()
  img.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _chunk(kind, data):
  return (struct.pack('>I', len(data)) + kind + data +
          struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))


def png16(values, color_type):
  """A 16-bit PNG (Pillow cannot write one in colour): 0 gray, 2 RGB, 6 RGBA."""
  height, width = values.shape[:2]
  rows = b''.join(b'\0' + values[y].astype('>u2').tobytes() for y in range(height))
  return (validation.PNG_MAGIC +
          _chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, color_type,
                                      0, 0, 0)) +
          _chunk(b'IDAT', zlib.compress(rows)) + _chunk(b'IEND', b''))


def png_header_only(width, height):
  """A PNG that claims width x height and holds no pixel data: a cheap 'huge' image."""
  return (validation.PNG_MAGIC +
          _chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) +
          _chunk(b'IEND', b''))


def run_executor(input_base, output_uri, **options):
  examples = standard_artifacts.Examples()
  examples.uri = str(output_uri)
  executor.Executor().Do(
      {}, {standard_component_specs.EXAMPLES_KEY: [examples]},
      component.executor_properties(str(input_base), options))
  return examples


def split_names(examples, split):
  files = tf.io.gfile.glob(os.path.join(examples.uri, f'Split-{split}', '*.gz'))
  return [tf.train.Example.FromString(r.numpy()).features.feature[
      features.FILE_NAME_KEY].bytes_list.value[0].decode()
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def quarantined(examples):
  return {r['file_name']: r for r in executor.read_quarantine(
      examples.get_string_custom_property(executor.QUARANTINE_URI_PROPERTY))}


def layout(root, num_trainval=3, num_test=2, seed=0):
  return synthetic_pets.generate(str(root), num_trainval=num_trainval,
                                 num_test=num_test, seed=seed, min_size=40,
                                 max_size=48)


# --- what a list entry may name --------------------------------------------------

@pytest.mark.parametrize('name', ['Abyssinian_100', 'great_pyrenees_12',
                                  'american_pit_bull_terrier_1', 'Bengal_5', 'x',
                                  'a-b_9'])
def test_official_names_are_safe(name):
  assert records.check_name(name) == name
  image, trimap = records.pair_paths('/data', name)
  assert (image, trimap) == (f'/data/images/{name}.jpg',
                             f'/data/annotations/trimaps/{name}.png')


def test_every_real_sample_name_is_safe(real_sample):
  for list_file in ('trainval.txt', 'test.txt'):
    for line in (real_sample / 'annotations' / list_file).read_text().splitlines():
      columns = records.parse_list_line(line)
      if columns:
        records.check_name(columns[0])


@pytest.mark.parametrize('name, problem', [
    ('', 'names may not be empty'),
    ('a\0b', 'names may not contain NUL characters'),
    ('../secret', "names may not contain path separators or '..'"),
    ('..', "names may not contain path separators or '..'"),
    ('a..b', "names may not contain path separators or '..'"),
    ('/etc/passwd', "names may not contain path separators or '..'"),
    ('images/x', "names may not contain path separators or '..'"),
    ('a\\b', "names may not contain path separators or '..'"),
    ('C:x', 'names are ASCII letters, digits'),
    ('.hidden', 'names are ASCII letters, digits'),
    ('-rf', 'names are ASCII letters, digits'),
    ('Abyssinian_1.5', 'names are ASCII letters, digits'),
    ('Ábyssinian_1', 'names are ASCII letters, digits'),
    ('x' * 201, 'at most 200 characters'),
])
def test_unsafe_names_are_refused_with_reason(name, problem):
  with pytest.raises(validation.BadInput) as info:
    records.pair_paths('/data', name)
  assert str(info.value).startswith('unsafe name ')
  assert problem in str(info.value)


def test_unsafe_names_are_quarantined_and_never_read(tmp_path):
  root = tmp_path / 'data'
  layout(root, num_trainval=1, num_test=0)
  # Bait: valid pairs where each traversal would land if it were followed.
  name = next(p.stem for p in (root / 'images').iterdir())
  image = (root / 'images' / f'{name}.jpg').read_bytes()
  trimap = (root / 'annotations' / 'trimaps' / f'{name}.png').read_bytes()
  _save(root / 'outside.jpg', image)
  _save(root / 'annotations' / 'outside.png', trimap)
  _save(tmp_path / 'etc' / 'x.jpg', image)
  _save(tmp_path / 'etc' / 'x.png', trimap)
  fn = records.ToRecordFn(str(root), 'list.txt')
  hostile = ['../outside', 'images/../../outside', str(tmp_path / 'etc' / 'x'),
             '..\\outside', 'a\0b', f'{name}/../{name}']
  with mock.patch.object(records, 'read_file', wraps=records.read_file) as read:
    outputs = [out for n in hostile for out in fn.process(f'{n} 1 1 1')]
    assert read.call_count == 0
  assert [o.tag for o in outputs] == [records.REJECTED_TAG] * len(hostile)
  for name_, out in zip(hostile, outputs):
    record = json.loads(out.value)
    assert record['file_name'] == name_
    assert record['reason'].startswith('unsafe name '), record
  # The same entry with the safe name is read (from images/ and trimaps/ only).
  with mock.patch.object(records, 'read_file', wraps=records.read_file) as read:
    [out] = fn.process(f'{name} 1 1 1')
  assert isinstance(out, bytes)
  assert [c.args[0] for c in read.call_args_list] == [
      str(root / 'images' / f'{name}.jpg'),
      str(root / 'annotations' / 'trimaps' / f'{name}.png')]


def test_a_folder_in_place_of_an_image_is_quarantined(tmp_path):
  (tmp_path / 'images' / 'Abyssinian_1.jpg').mkdir(parents=True)
  with pytest.raises(validation.BadInput, match='cannot read .*Abyssinian_1.jpg'):
    records.make_record(str(tmp_path), ['Abyssinian_1', '1', '1', '1'])


@pytest.mark.parametrize('columns', [
    ['Abyssinian_1', '1', '1', '9' * 19], ['Abyssinian_1', '1', '1', '9' * 5000],
    ['Abyssinian_1', '١', '1', '1'], ['Abyssinian_1', '²', '1', '1']])
def test_ids_that_do_not_fit_an_int64_are_malformed(columns, tmp_path):
  with pytest.raises(validation.BadInput, match='malformed list entry'):
    records.make_record(str(tmp_path), columns)


# --- the image size limit ----------------------------------------------------------

def test_large_jpeg_is_quarantined_from_its_header():
  data = _encode(Image.new('RGB', (5000, 5000), (90, 120, 30)), 'JPEG')
  with pytest.raises(validation.BadInput) as info:
    validation.normalise_image(data, max_pixels=1_000_000)
  assert str(info.value) == (
      'image is 5000x5000 = 25.0 Mpx, above the limit of 1.0 Mpx')


def test_huge_header_is_quarantined_without_decoding():
  # 196 Mpx: Pillow's own guard (2 x 89.5 Mpx) refuses it before we see the
  # size; the reason still gives it. No pixel data exists, so any decode
  # attempt would fail differently.
  data = png_header_only(14000, 14000)
  with pytest.raises(validation.BadInput) as info:
    validation.normalise_image(data, max_pixels=ExampleGenOptions().max_image_pixels)
  assert str(info.value) == 'image is 196.0 Mpx, above the limit of 50.0 Mpx'
  # 80 Mpx: opened by Pillow (with its DecompressionBombWarning), refused by ours.
  with pytest.raises(validation.BadInput) as info:
    validation.normalise_image(png_header_only(10000, 8000), 50_000_000)
  assert str(info.value) == (
      'image is 10000x8000 = 80.0 Mpx, above the limit of 50.0 Mpx')
  # A limit set above Pillow's guard: the guard is named.
  with pytest.raises(validation.BadInput,
                     match=r"image is 10000\.0 Mpx, above Pillow's "
                     r'decompression-bomb limit of 179\.0 Mpx'):
    validation.normalise_image(png_header_only(100000, 100000), 10**12)


def test_decompression_bomb_warning_as_error_is_quarantined():
  with pytest.warns(Image.DecompressionBombWarning):  # the default: a warning
    with pytest.raises(validation.BadInput, match='above the limit'):
      validation.normalise_image(png_header_only(10000, 9000), 50_000_000)
  with warnings.catch_warnings():  # as under `python -W error`
    warnings.simplefilter('error', Image.DecompressionBombWarning)
    with pytest.raises(validation.BadInput) as info:
      validation.normalise_image(png_header_only(10000, 9000), 50_000_000)
  assert str(info.value) == 'image is 90.0 Mpx, above the limit of 50.0 Mpx'


def test_huge_trimap_is_refused_before_decoding():
  with pytest.raises(validation.BadInput,
                     match='trimap is 10000x5000 but the image is 40x30'):
    validation.validate_trimap(png_header_only(10000, 5000), 30, 40)


def test_make_record_applies_the_limit(tmp_path):
  _save(tmp_path / 'images' / 'Big_1.jpg',
        _encode(Image.new('RGB', (1200, 1000)), 'JPEG'))
  fn = records.ToRecordFn(str(tmp_path), 'list.txt', max_image_pixels=1_000_000)
  [out] = fn.process('Big_1 1 1 1')
  assert json.loads(out.value)['reason'] == (
      'image is 1200x1000 = 1.2 Mpx, above the limit of 1.0 Mpx')


# --- every image mode Pillow opens ---------------------------------------------------

H, W = 32, 48
_GRAY16 = np.linspace(0, 65535, H * W).reshape(H, W).astype(np.uint16)
_RGB16 = np.random.default_rng(0).integers(0, 65536, (H, W, 3)).astype(np.uint16)
_PALETTE = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
# 8x8 blocks of palette indices: aligned with JPEG's blocks and chroma
# subsampling, so the re-encoded mean is faithful.
_INDICES = np.kron(np.arange(H * W // 64).reshape(H // 8, W // 8) % 4,
                   np.ones((8, 8), int)).astype(np.uint8)
_ALPHA = np.zeros((H, W), np.uint8)
_ALPHA[:, W // 2:] = 255  # half transparent: dropped, not composited


def _palette_image(mode='P'):
  img = Image.new('P', (W, H))
  img.putdata(_INDICES.ravel().tolist())
  img.putpalette(_PALETTE)
  return img if mode == 'P' else img.convert(mode)


def _palette_mean():
  colours = np.array(_PALETTE, float).reshape(4, 3)
  return colours[_INDICES].mean(axis=(0, 1))


def _gray_mean(values):
  return np.full(3, values.mean())


def _mode_cases():
  """mode label -> (source bytes, Pillow mode on opening, expected RGB mean)."""
  gray8 = (_GRAY16 >> 8).astype(np.uint8)
  rgba = np.dstack([np.full((H, W), 40, np.uint8), gray8,
                    np.full((H, W), 200, np.uint8), _ALPHA])
  cmyk = Image.new('CMYK', (W, H), (0, 255, 0, 0))  # magenta | black
  cmyk.paste((0, 0, 0, 255), (W // 2, 0, W, H))
  lab = Image.new('LAB', (W, H), (255, 128, 128))  # white | black
  lab.paste((0, 128, 128), (W // 2, 0, W, H))
  checker = np.kron(np.indices((H // 8, W // 8)).sum(axis=0) % 2,
                    np.ones((8, 8), int)).astype(bool)
  l_jpeg = _encode(Image.fromarray(gray8), 'JPEG', quality=95)
  return {
      'L': (l_jpeg, 'L', _gray_mean(np.asarray(Image.open(io.BytesIO(l_jpeg))))),
      'I;16': (_encode(Image.fromarray(_GRAY16), 'PNG'), 'I;16',
               _gray_mean(_GRAY16 >> 8)),
      'I;16B': (_encode(Image.frombytes('I;16B', (W, H),
                                        _GRAY16.astype('>u2').tobytes()), 'TIFF'),
                'I;16B', _gray_mean(_GRAY16 >> 8)),
      'I': (_encode(Image.fromarray(_GRAY16.astype(np.int32)), 'TIFF'), 'I',
            _gray_mean(_GRAY16 >> 8)),
      'RGB 16-bit': (png16(_RGB16, 2), 'RGB', (_RGB16 >> 8).mean(axis=(0, 1))),
      'RGBA 16-bit': (png16(np.dstack([_RGB16, _GRAY16]), 6), 'RGBA',
                      (_RGB16 >> 8).mean(axis=(0, 1))),
      'P': (_encode(_palette_image(), 'PNG'), 'P', _palette_mean()),
      'P transparency': (_encode(_palette_image(), 'PNG', transparency=0), 'P',
                         _palette_mean()),
      'P GIF': (_encode(_palette_image(), 'GIF', transparency=3), 'P',
                _palette_mean()),
      'PA': (_encode(_palette_image('PA'), 'TIFF'), 'PA', _palette_mean()),
      'LA': (_encode(Image.fromarray(np.dstack([gray8, _ALPHA])), 'PNG'),
             'LA', _gray_mean(gray8)),
      'RGBA': (_encode(Image.fromarray(rgba), 'PNG'), 'RGBA',
               rgba[..., :3].mean(axis=(0, 1))),
      'CMYK': (_encode(cmyk, 'JPEG', quality=95), 'CMYK',
               np.array([127.5, 0, 127.5])),
      '1': (_encode(Image.fromarray(checker), 'PNG'), '1', np.full(3, 127.5)),
      'LAB': (_encode(lab, 'TIFF'), 'LAB', np.full(3, 127.5)),
  }


@pytest.mark.parametrize('label', sorted(_mode_cases()))
def test_every_mode_is_normalised_faithfully(label):
  data, mode, expected = _mode_cases()[label]
  with Image.open(io.BytesIO(data)) as source:
    assert source.mode == mode  # the case exercises what it says
  out, height, width, note = validation.normalise_image(data)
  assert (height, width) == (H, W) and note
  decoded = tf.io.decode_jpeg(out).numpy()
  assert decoded.shape == (H, W, 3)
  # Within JPEG tolerance (a clipped 16-bit image would be ~254 here).
  np.testing.assert_allclose(decoded.mean(axis=(0, 1)), expected, atol=2.5)


def test_pillow_reduces_16_bit_colour_png_to_its_high_byte():
  # Why 'RGB 16-bit' needs no code of ours: Pillow opens such a PNG as 8-bit
  # RGB holding each sample's high byte, the same scaling as for 16-bit gray.
  with Image.open(io.BytesIO(png16(_RGB16, 2))) as img:
    np.testing.assert_array_equal(np.asarray(img), _RGB16 >> 8)


def test_unscalable_modes_are_quarantined_with_the_mode_named():
  float_tiff = _encode(Image.fromarray(np.full((H, W), 0.5, np.float32)), 'TIFF')
  with pytest.raises(validation.BadInput,
                     match=r'image has mode F \(32-bit float samples\)'):
    validation.normalise_image(float_tiff)
  wide = _encode(Image.fromarray(np.full((H, W), 70000, np.int32)), 'TIFF')
  with pytest.raises(validation.BadInput, match=r'image has mode I with values '
                     r'70000\.\.70000 outside the 16-bit range'):
    validation.normalise_image(wide)
  with pytest.raises(validation.BadInput, match='image has mode La, which '
                     'cannot be converted to RGB'):
    validation.to_rgb(Image.new('La', (4, 4)))


def test_formats_outside_the_accepted_list_are_refused():
  eps = b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n'
  with pytest.raises(validation.BadInput, match='not an image in an accepted '
                     r'format \(JPEG, PNG'):
    validation.normalise_image(eps)
  ico = _encode(Image.new('RGB', (16, 16)), 'ICO')
  with pytest.raises(validation.BadInput, match='accepted format'):
    validation.normalise_image(ico)


def test_trimap_png_without_iend_is_reencoded():
  tri = np.array([[1, 2, 3], [3, 2, 1]], np.uint8)
  png = _encode(Image.fromarray(tri), 'PNG')
  cut = png[:-12]  # without its IEND chunk: PIL reads it, libpng may not
  out = validation.validate_trimap(cut, 2, 3)
  assert out != cut and out.endswith(validation.PNG_IEND)
  np.testing.assert_array_equal(tf.io.decode_png(out).numpy()[..., 0], tri)


# --- list files: BOM, CRLF, bytes that are not UTF-8 ---------------------------------

def test_parse_list_line_strips_bom_and_crlf():
  assert records.parse_list_line(BOM + 'Abyssinian_1 1 1 1\r\n') == [
      'Abyssinian_1', '1', '1', '1']
  assert records.parse_list_line(BOM + '#Image CLASS-ID SPECIES BREED ID\r\n') is None
  assert records.parse_list_line(BOM) is None
  assert records.parse_list_line(BOM + '\r\n') is None


def test_executor_on_a_hostile_list(tmp_path):
  """One run: BOM + CRLF list, traversal names, bad UTF-8, huge and 16-bit images."""
  root = tmp_path / 'data'
  names = layout(root, num_trainval=5, num_test=2)['trainval']
  huge, deep = names[1], names[2]
  _save(root / 'images' / f'{huge}.jpg', png_header_only(14000, 14000))
  with Image.open(root / 'images' / f'{deep}.jpg') as img:
    size = img.size
  gray16 = np.linspace(0, 65535, size[0] * size[1]).reshape(size[::-1])
  _save(root / 'images' / f'{deep}.jpg',
        _encode(Image.fromarray(gray16.astype(np.uint16)), 'PNG'))
  _save(root / 'outside.jpg', (root / 'images' / f'{names[0]}.jpg').read_bytes())
  _save(root / 'annotations' / 'outside.png',
        (root / 'annotations' / 'trimaps' / f'{names[0]}.png').read_bytes())
  listing = root / 'annotations' / 'trainval.txt'
  entries = [l for l in listing.read_text().splitlines() if not l.startswith('#')]
  hostile = ['../outside 1 1 1', '/etc/hostname 1 1 1', 'a\\b 1 1 1']
  # A BOM right before the first entry, CRLF endings, a line that is not UTF-8.
  listing.write_bytes((BOM + '\r\n'.join(entries + hostile) + '\r\n').encode() +
                      b'\xff\xfeBad_1 1 1 1\r\n')

  examples = run_executor(root, tmp_path / 'examples', min_valid_fraction=0.1)
  written = split_names(examples, 'train')
  rejected = quarantined(examples)
  assert names[0] in written  # the entry after the BOM is not lost
  assert deep in written
  assert sorted(written) == sorted(set(names) - {huge})
  assert rejected[huge]['reason'] == (
      'image is 196.0 Mpx, above the limit of 50.0 Mpx')
  for line in hostile:
    assert rejected[line.split()[0]]['reason'].startswith('unsafe name '), line
  [bad_utf8] = [r for n, r in rejected.items() if n.endswith('Bad_1')]
  assert bad_utf8['file_name'] == '\ufffd\ufffdBad_1'
  assert bad_utf8['reason'].startswith('unsafe name ')
  # listed = written + quarantined, per split.
  counts = json.loads(examples.get_string_custom_property(
      executor.SPLIT_COUNTS_PROPERTY))
  assert counts['train'] == {'examples': len(written), 'rejected': len(rejected)}
  assert len(written) + len(rejected) == len(entries) + len(hostile) + 1


# --- failing splits, and the quarantine they keep ----------------------------------

def test_all_rejected_split_fails_and_its_quarantine_is_kept(tmp_path):
  root = tmp_path / 'data'
  names = layout(root, num_trainval=2, num_test=1)
  for name in names['trainval']:
    _save(root / 'images' / f'{name}.jpg', b'')
  out = tmp_path / 'tfx' / 'PetExampleGen' / 'examples' / '7'
  failed = tmp_path / 'failed_ingestion'
  with pytest.raises(ValueError) as info:
    run_executor(root, out, failed_quarantine_dir=str(failed))
  kept = failed / '7'
  assert str(info.value) == (
      "split 'train' (annotations/trainval.txt) has no valid examples: "
      f"2 listed, 2 rejected (reasons in {kept / 'trainval.jsonl'})")
  assert sorted(os.listdir(kept)) == [
      'test.counts.json', 'test.jsonl', 'trainval.counts.json', 'trainval.jsonl']
  reasons = executor.read_quarantine(str(kept))
  assert sorted(r['file_name'] for r in reasons) == sorted(names['trainval'])
  assert all(r['reason'] == 'image file is empty (0 bytes)' for r in reasons)
  assert executor.read_counts(str(kept))['trainval']['rejected'] == 2


def test_empty_list_file_fails_naming_the_split(tmp_path):
  root = tmp_path / 'data'
  layout(root, num_trainval=2, num_test=1)
  (root / 'annotations' / 'test.txt').write_bytes(b'')
  with pytest.raises(ValueError) as info:
    run_executor(root, tmp_path / 'examples')
  assert str(info.value) == (
      "split 'eval' (annotations/test.txt) has no valid examples: the list "
      'file holds no entries')


def test_count_failure_messages():
  splits = component.input_config(spans=False).splits
  ok = {'train': {'examples': 3, 'rejected': 1}, 'eval': {'examples': 1, 'rejected': 0}}
  assert executor.count_failure(splits, ok, 0.5) is None
  message = executor.count_failure(splits, ok, 0.9)
  assert message('/kept/7') == (
      'only 4 of 5 listed pairs are valid, below the minimum valid fraction 0.9 '
      '(reasons in /kept/7)')
  empty = {'train': {'examples': 0, 'rejected': 0}, 'eval': {'examples': 0, 'rejected': 2}}
  assert executor.count_failure(splits, empty, 0.0)('/q') == (
      "split 'train' (annotations/trainval.txt) has no valid examples: the list "
      "file holds no entries; split 'eval' (annotations/test.txt) has no valid "
      'examples: 2 listed, 2 rejected (reasons in /q/test.jsonl)')


def test_create_example_gen_packs_options_and_uses_the_pet_driver(tmp_path):
  gen = component.create_example_gen(
      str(tmp_path), options=ExampleGenOptions(min_valid_fraction=0.7,
                                               max_image_pixels=1234),
      failed_quarantine_dir=str(tmp_path / 'failed'))
  assert isinstance(gen, component.PetExampleGen)
  assert gen.driver_class is driver.PetDriver
  options = executor.executor_options({
      standard_component_specs.CUSTOM_CONFIG_KEY:
          gen.exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY]})
  assert options == {'min_valid_fraction': 0.7, 'max_image_pixels': 1234,
                     'failed_quarantine_dir': str(tmp_path / 'failed')}
  # Defaults, and the dict form tests and benchmarks use.
  assert executor.executor_options(component.executor_properties('/d')) == {
      'min_valid_fraction': 0.5, 'max_image_pixels': 50_000_000,
      'failed_quarantine_dir': None}


# --- the cache key sees the images --------------------------------------------------

def _fingerprint(root):
  return driver.splits_pairs_fingerprint(
      str(root), component.input_config(spans=False).splits)


def test_pairs_fingerprint_follows_listed_files_only(tmp_path):
  root = tmp_path / 'data'
  names = layout(root)['trainval']
  image = root / 'images' / f'{names[0]}.jpg'
  trimap = root / 'annotations' / 'trimaps' / f'{names[1]}.png'
  before = _fingerprint(root)
  assert before == _fingerprint(root)
  assert before.startswith('pairs:train,num_names:3,num_files:6,total_bytes:')
  # Unlisted files and the files' access times do not matter.
  _save(root / 'images' / 'Unlisted_1.jpg', b'x')
  os.utime(image, ns=(0, image.stat().st_mtime_ns))
  assert _fingerprint(root) == before

  stat = image.stat()
  image.write_bytes(image.read_bytes() + b'\0')  # a different size
  assert _fingerprint(root) != before
  # The same size, another modification time (TF's stat has 1 s resolution).
  image.write_bytes(image.read_bytes()[:-1])
  os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert _fingerprint(root) == before
  os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
  assert _fingerprint(root) != before
  os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  trimap.write_bytes(trimap.read_bytes() + b'\0')
  assert _fingerprint(root) != before


def test_pairs_fingerprint_counts_missing_and_unsafe_entries(tmp_path):
  root = tmp_path / 'data'
  names = layout(root)['trainval']
  listing = root / 'annotations' / 'trainval.txt'
  listing.write_text(listing.read_text() + 'Ghost_1 1 1 1\n../outside 1 1 1\n')
  before = _fingerprint(root)
  assert before.startswith('pairs:train,num_names:5,num_files:6,')
  # The missing pair appearing changes it; the traversal target is never looked at.
  _save(root / 'outside.jpg', b'bait')
  assert _fingerprint(root) == before
  _save(root / 'images' / 'Ghost_1.jpg', (root / 'images' / f'{names[0]}.jpg')
        .read_bytes())
  assert _fingerprint(root) != before


def test_driver_resolves_span_then_fingerprints_its_pairs(tmp_path):
  root = tmp_path / 'data'
  for span in (1, 2):
    layout(root / f'span-{span}', num_trainval=2, num_test=1, seed=span)
  props = {
      standard_component_specs.INPUT_BASE_KEY: str(root),
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
          component.input_config(spans=True)),
  }

  def resolve():
    resolved = driver.PetDriver(None).resolve_exec_properties(dict(props), None, None)
    return resolved, resolved[example_gen_utils.FINGERPRINT_PROPERTY_NAME]

  resolved, before = resolve()
  assert resolved[example_gen_utils.SPAN_PROPERTY_NAME] == 2
  lines = before.splitlines()
  # TFX's own lines for the list files, then one per split for the pairs.
  assert [l.split(',')[0] for l in lines] == [
      'split:train', 'split:eval', 'pairs:train', 'pairs:eval']
  old_image = next((root / 'span-1' / 'images').iterdir())
  old_image.write_bytes(old_image.read_bytes() + b'\0')
  assert resolve()[1] == before  # span 1 is not read
  image = next((root / 'span-2' / 'images').iterdir())
  image.write_bytes(image.read_bytes() + b'\0')
  after = resolve()[1]
  assert after != before and after.splitlines()[:2] == lines[:2]


def test_pairs_fingerprint_of_a_full_size_list_is_cheap(tmp_path):
  root = tmp_path / 'data'
  (root / 'images').mkdir(parents=True)
  (root / 'annotations' / 'trimaps').mkdir(parents=True)
  names = [f'Breed_{i}' for i in range(7349)]
  for name in names:  # the driver only stats: one byte a file will do
    (root / 'images' / f'{name}.jpg').write_bytes(b'x')
    (root / 'annotations' / 'trimaps' / f'{name}.png').write_bytes(b'x')
  lines = ''.join(f'{n} 1 1 1\n' for n in names)
  (root / 'annotations' / 'trainval.txt').write_text(lines)
  (root / 'annotations' / 'test.txt').write_text('')
  start = time.perf_counter()
  fingerprint = _fingerprint(root)
  seconds = time.perf_counter() - start
  assert 'num_files:14698,total_bytes:14698' in fingerprint
  assert seconds < 5.0, seconds  # ~0.3 s here; generous for a loaded CI box


def _executions(out):
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = str(out / 'metadata.db')
  store = metadata_store.MetadataStore(connection)
  return [metadata_store_pb2.Execution.State.Name(e.last_known_state)
          for e in sorted(store.get_executions(), key=lambda e: e.id)]


def test_replaced_image_under_an_unchanged_list_is_reingested(tmp_path):
  root = tmp_path / 'data'
  names = layout(root, num_trainval=2, num_test=1)['trainval']
  out = tmp_path / 'out'

  def run():
    gen = component.create_example_gen(str(root)).with_id('PetExampleGen')
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name='cache_test', pipeline_root=str(out / 'tfx'),
        components=[gen], enable_cache=True,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(out / 'metadata.db')))))

  run()
  run()
  assert _executions(out) == ['COMPLETE', 'CACHED']
  image = root / 'images' / f'{names[0]}.jpg'
  with Image.open(image) as img:
    replacement = _encode(img.transpose(Image.Transpose.ROTATE_180), 'JPEG',
                          quality=80)
  image.write_bytes(replacement)
  run()
  assert _executions(out) == ['COMPLETE', 'CACHED', 'COMPLETE']


# --- property: every input becomes an example or a reasoned quarantine -------------

FUZZ_EXAMPLES = int(os.environ.get('PETS_FUZZ_EXAMPLES', '200'))
FUZZ_NAMES = ('Abyssinian_1', 'great_pyrenees_12', 'x')  # the names given files
HOSTILE_NAMES = ('../outside', '..', '/etc/passwd', 'a\\b', 'a\0b', '',
                 'images/../../outside', BOM, 'Ábc_1', '.', '-')
# (mode, format) pairs Pillow writes: every decoder path normalise_image takes.
SOURCES = (('RGB', 'JPEG'), ('L', 'JPEG'), ('CMYK', 'JPEG'), ('RGB', 'PNG'),
           ('RGBA', 'PNG'), ('LA', 'PNG'), ('P', 'PNG'), ('1', 'PNG'),
           ('I;16', 'PNG'), ('P', 'GIF'), ('RGB', 'BMP'), ('RGB', 'TIFF'),
           ('F', 'TIFF'), ('I', 'TIFF'), ('PA', 'TIFF'), ('RGB', 'WEBP'),
           ('RGB', 'PPM'), ('RGB', 'JPEG progressive'))


def _image(mode, fmt, height, width, seed):
  rng = np.random.default_rng(seed)
  if mode in ('I;16', 'I'):
    values = rng.integers(0, 65536, (height, width))
    img = Image.fromarray(values.astype(np.uint16 if mode == 'I;16' else np.int32))
  elif mode == 'F':
    img = Image.fromarray(rng.random((height, width), np.float32))
  else:
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8))
    img = img.convert(mode)
  progressive = fmt.endswith('progressive')
  return _encode(img, fmt.split()[0], **({'progressive': True} if progressive else {}))


@st.composite
def _valid_image(draw):
  mode, fmt = draw(st.sampled_from(SOURCES))
  height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
  return _image(mode, fmt, height, width, draw(st.integers(0, 2**16)))


@st.composite
def _mutated(draw, strategy):
  """Valid bytes cut short, with bytes overwritten, or with junk appended."""
  data = bytearray(draw(strategy))
  for _ in range(draw(st.integers(0, 4))):
    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
  cut = draw(st.integers(0, len(data)))
  return bytes(data[:cut]) + draw(st.binary(max_size=8))


@st.composite
def _trimap(draw, size):
  """A trimap, mostly of the image's size with values 1..3, sometimes not."""
  height, width = size
  if draw(st.integers(0, 3)) == 0:
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  values = rng.integers(1, 4, (height, width)).astype(np.uint16)
  if draw(st.integers(0, 3)) == 0:
    values[rng.integers(height), rng.integers(width)] = draw(
        st.sampled_from([0, 4, 255, 256, 65535]))
  mode, fmt = draw(st.sampled_from([('L', 'PNG'), ('P', 'PNG'), ('I;16', 'PNG'),
                                    ('L', 'BMP'), ('RGB', 'PNG'), ('L', 'GIF')]))
  if mode == 'I;16':
    return _encode(Image.fromarray(values), fmt)
  # frombytes, not convert: the values must stay the (palette) indices.
  img = Image.frombytes('L' if mode == 'RGB' else mode, (width, height),
                        (values % 256).astype(np.uint8).tobytes())
  return _encode(img.convert(mode), fmt)


def _size(data):
  """The (height, width) a trimap must have to match `data`; small if unknown.

  A mutated header may claim any size: only sizes up to 64x64 are matched,
  so that drawing a trimap stays cheap.
  """
  try:
    with Image.open(io.BytesIO(data)) as img:
      if img.height * img.width <= 4096:
        return img.height, img.width
  except Exception:  # pylint: disable=broad-except
    pass  # undecodable bytes have no size to match: fall through to None
  return 4, 4


def _weighted(draw, choices):
  """Draws from one of `choices` ((weight, strategy) pairs) by weight."""
  strategies = [strategy for weight, strategy in choices for _ in range(weight)]
  return draw(strategies[draw(st.integers(0, len(strategies) - 1))])


@st.composite
def _pair(draw):
  """(image bytes or None for a missing file, trimap bytes or None).

  Weighted towards valid files so that about a quarter of the well-formed
  entries become examples: the property covers both outcomes.
  """
  image = _weighted(draw, [(6, _valid_image()), (2, _mutated(_valid_image())),
                           (1, st.binary(max_size=64)), (1, st.none())])
  trimap_valid = _trimap(_size(image) if image else (4, 4))
  trimap = _weighted(draw, [(6, trimap_valid), (2, _mutated(trimap_valid)),
                            (1, st.binary(max_size=64)), (1, st.none())])
  return image, trimap


_column = st.one_of(st.integers(0, 40).map(str), st.text(max_size=6),
                    st.sampled_from(['9' * 19, '9' * 30, '-1', '١']))
_entry = st.builds(
    lambda bom, name, cols, sep, end: bom + sep.join([name] + cols) + end,
    st.sampled_from(['', BOM]),
    st.one_of(st.sampled_from(FUZZ_NAMES + HOSTILE_NAMES), st.text(max_size=12)),
    st.lists(_column, max_size=5),
    st.sampled_from([' ', '\t', '  ']), st.sampled_from(['', '\n', '\r\n']))
# Well-formed entries naming the files drawn: the way to a valid example.
_good_entry = st.builds(
    lambda name, ids, end: ' '.join([name] + [str(i) for i in ids]) + end,
    st.sampled_from(FUZZ_NAMES), st.lists(st.integers(0, 2**63 - 1), min_size=3,
                                          max_size=3),
    st.sampled_from(['', '\n', '\r\n']))
_line = st.integers(0, 5).flatmap(lambda i: [
    _good_entry, _good_entry, _good_entry, _entry, st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b + b' 1 1 1')][i])


@pytest.fixture(scope='module')
def fuzz_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('fuzz') / 'data'
  (root / 'images').mkdir(parents=True)
  (root / 'annotations' / 'trimaps').mkdir(parents=True)
  # Bait for traversal: a valid pair just outside the allowed folders.
  image = _image('RGB', 'JPEG', 4, 4, 0)
  _save(root / 'outside.jpg', image)
  _save(root / 'annotations' / 'outside.png',
        _encode(Image.fromarray(np.full((4, 4), 2, np.uint8)), 'PNG'))
  return root


def _place(path, data):
  if data is None:
    path.unlink(missing_ok=True)
  else:
    path.write_bytes(data)


def _check_example(record, columns, name):
  example = tf.train.Example.FromString(record)
  value = {k: v.bytes_list.value[0] if v.bytes_list.value else
           v.float_list.value[0] if v.float_list.value else v.int64_list.value[0]
           for k, v in example.features.feature.items()}
  assert set(value) >= set(features.DRIFT_FEATURES) | {features.BREED_KEY}
  assert all(0.0 <= value[k] <= 1.0 for k in (
      features.BRIGHTNESS_KEY, features.SATURATION_KEY, features.PET_FRACTION_KEY,
      features.BORDER_FRACTION_KEY))
  assert value[features.FILE_NAME_KEY] == name.encode()
  assert [value[k] for k in (features.CLASS_ID_KEY, features.SPECIES_KEY,
                             features.BREED_ID_KEY)] == [int(c) for c in columns[1:]]
  image = tf.io.decode_jpeg(value[features.IMAGE_KEY]).numpy()
  mask = tf.io.decode_png(value[features.MASK_KEY]).numpy()
  size = (value[features.HEIGHT_KEY], value[features.WIDTH_KEY])
  assert image.shape == size + (3,) and mask.shape == size + (1,)
  assert set(np.unique(mask).tolist()) <= {1, 2, 3}


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          derandomize='PETS_FUZZ_EXAMPLES' not in os.environ,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(line=_line, pair=_pair(), max_pixels=st.sampled_from([None, 60, 10**6]))
def test_any_input_becomes_an_example_or_a_reasoned_quarantine(
    fuzz_root, line, pair, max_pixels):
  for name in FUZZ_NAMES:  # the drawn files, under every name that has files
    _place(fuzz_root / 'images' / f'{name}.jpg', pair[0])
    _place(fuzz_root / 'annotations' / 'trimaps' / f'{name}.png', pair[1])
  fn = records.ToRecordFn(str(fuzz_root), 'list.txt', max_image_pixels=max_pixels)
  with mock.patch.object(records, 'read_file', wraps=records.read_file) as read:
    outputs = list(fn.process(line))
  text = line.decode('utf-8', errors='replace') if isinstance(line, bytes) else line
  columns = records.parse_list_line(text)
  allowed = (str(fuzz_root / 'images') + os.sep,
             str(fuzz_root / 'annotations' / 'trimaps') + os.sep)
  for call in read.call_args_list:  # nothing outside the two folders is read
    path = call.args[0]
    assert os.path.realpath(path).startswith(allowed) and '..' not in path, path
  if columns is None:  # a comment or blank line is not an entry
    assert outputs == []
    return
  [out] = outputs
  if isinstance(out, bytes):
    event('valid example')
    _check_example(out, columns, columns[0])
  else:
    assert out.tag == records.REJECTED_TAG
    record = json.loads(out.value)
    assert record['reason'].strip() and record['file_name'] == columns[0]
    # What kind of rejection (the reason up to its first detail), for
    # --hypothesis-show-statistics.
    event('quarantined: ' + re.split(r"[:'(\d/]", record['reason'])[0].strip())
