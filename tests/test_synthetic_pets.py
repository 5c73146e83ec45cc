"""Tests for pipeline.tools.synthetic_pets: layout, formats, trimaps, labels, determinism."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.tools import synthetic_pets

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_SAMPLE_LIST = '/work/shared/data/oxford_pets_sample/annotations/list.txt'
JPEG_MAGIC = b'\xff\xd8\xff'
NUM_TRAINVAL, NUM_TEST = 5, 3
# Small images keep the suite fast; the defaults get their own test below.
SIZES = dict(min_size=48, max_size=80)


def _read_list(path):
  """Returns (header lines, [(name, class_id, species, breed_id)])."""
  with open(path) as f:
    lines = f.read().splitlines()
  header = [l for l in lines if l.startswith('#')]
  rows = []
  for line in lines[len(header):]:
    name, *ids = line.split()
    assert len(ids) == 3, line
    rows.append((name, *(int(i) for i in ids)))
  return lines[:len(header)], rows


def _hashes(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('pets'))
  result = synthetic_pets.generate(root, NUM_TRAINVAL, NUM_TEST, seed=0, **SIZES)
  return root, result


def _pairs(root):
  for name in sorted(os.listdir(os.path.join(root, 'images'))):
    stem = name[:-len('.jpg')]
    yield (stem, os.path.join(root, 'images', name),
           os.path.join(root, 'annotations', 'trimaps', stem + '.png'))


def test_layout_and_counts_match_list_files(dataset):
  root, result = dataset
  assert result['root'] == root
  ann = os.path.join(root, 'annotations')
  listed = {}
  for split in ('list', 'trainval', 'test'):
    header, rows = _read_list(os.path.join(ann, split + '.txt'))
    assert header == list(synthetic_pets.HEADER)
    assert header[0].startswith('#Image CLASS-ID SPECIES')
    listed[split] = [r[0] for r in rows]
  assert listed['trainval'] == result['trainval']
  assert listed['test'] == result['test']
  assert len(listed['trainval']) == NUM_TRAINVAL
  assert len(listed['test']) == NUM_TEST
  assert not set(listed['trainval']) & set(listed['test'])
  assert sorted(listed['list']) == sorted(listed['trainval'] + listed['test'])
  assert len(set(listed['list'])) == NUM_TRAINVAL + NUM_TEST
  assert sorted(os.listdir(os.path.join(root, 'images'))) == sorted(
      n + '.jpg' for n in listed['list'])
  assert sorted(os.listdir(os.path.join(ann, 'trimaps'))) == sorted(
      n + '.png' for n in listed['list'])


def test_images_are_rgb_baseline_jpegs_sized_like_their_trimaps(dataset):
  root, _ = dataset
  for _, image_path, trimap_path in _pairs(root):
    with open(image_path, 'rb') as f:
      data = f.read()
    assert data.startswith(JPEG_MAGIC), image_path
    assert b'\xff\xc0' in data, 'no baseline SOF0 marker'
    assert b'\xff\xc2' not in data, 'progressive JPEG'
    with Image.open(image_path) as image, Image.open(trimap_path) as trimap:
      assert image.format == 'JPEG' and image.mode == 'RGB'
      assert trimap.format == 'PNG' and trimap.mode == 'L'
      assert image.size == trimap.size
      assert all(SIZES['min_size'] <= s <= SIZES['max_size'] for s in image.size)
      image.load()  # decodes fully


def test_trimaps_hold_exactly_pet_background_border(dataset):
  root, _ = dataset
  for stem, _, trimap_path in _pairs(root):
    values = set(np.unique(np.asarray(Image.open(trimap_path))).tolist())
    assert values == {1, 2, 3}, (stem, values)


def _near(mask, radius):
  """True where `mask` holds within `radius` px (Chebyshev): a binary dilation."""
  padded = np.pad(mask, radius)
  h, w = mask.shape
  out = np.zeros_like(mask)
  for dy in range(2 * radius + 1):
    for dx in range(2 * radius + 1):
      out |= padded[dy:dy + h, dx:dx + w]
  return out


def test_border_band_is_thin_and_straddles_the_outline(dataset):
  root, _ = dataset
  for stem, _, trimap_path in _pairs(root):
    t = np.asarray(Image.open(trimap_path))
    border = t == 3
    # Pet and background never touch directly: a border pixel separates them.
    for a, b in ((t[:, 1:], t[:, :-1]), (t[1:, :], t[:-1, :])):
      assert not np.any((a == 1) & (b == 2) | (a == 2) & (b == 1)), stem
    # A 2-4 px band: every border pixel lies within 4 px of the pet, and (away
    # from where the image edge clips the outline) within 4 px of background.
    assert np.all(_near(t == 1, 4)[border]), stem
    assert np.mean(_near(t == 2, 4)[border]) > 0.9, stem


def test_pet_is_visibly_different_from_background(dataset):
  root, _ = dataset
  brighter = []
  for stem, image_path, trimap_path in _pairs(root):
    rgb = np.asarray(Image.open(image_path), dtype=np.float32)
    t = np.asarray(Image.open(trimap_path))
    pet, bg = rgb[t == 1].mean(axis=0), rgb[t == 2].mean(axis=0)
    assert np.linalg.norm(pet - bg) > 40, (stem, pet, bg)
    brighter.append(pet.mean() > bg.mean())
  # No single global rule: pets are brighter in some images, darker in others.
  assert any(brighter) and not all(brighter)


def test_label_columns_follow_the_official_scheme(tmp_path):
  # One image per breed covers all 37 classes.
  result = synthetic_pets.generate(str(tmp_path), 37, 0, **SIZES)
  _, rows = _read_list(os.path.join(str(tmp_path), 'annotations', 'list.txt'))
  assert [r[0] for r in rows] == result['trainval']
  by_breed = {}
  for name, class_id, species, breed_id in rows:
    breed, number = name.rsplit('_', 1)
    assert number.isdigit()
    assert species == (1 if name[0].isupper() else 2), name
    by_breed[breed] = (class_id, species, breed_id)
  assert sorted(c for c, _, _ in by_breed.values()) == list(range(1, 38))
  assert sorted(b for _, s, b in by_breed.values() if s == 1) == list(range(1, 13))
  assert sorted(b for _, s, b in by_breed.values() if s == 2) == list(range(1, 26))
  # Anchors from the official list.txt.
  assert by_breed['Abyssinian'] == (1, 1, 1)
  assert by_breed['american_bulldog'] == (2, 2, 1)
  assert by_breed['Bengal'] == (6, 1, 2)
  assert by_breed['Sphynx'] == (34, 1, 12)
  assert by_breed['yorkshire_terrier'] == (37, 2, 25)


@pytest.mark.skipif(not os.path.exists(REAL_SAMPLE_LIST), reason='no real sample')
def test_label_columns_agree_with_the_real_sample():
  table = synthetic_pets.breed_table()
  _, rows = _read_list(REAL_SAMPLE_LIST)
  assert rows
  for name, class_id, species, breed_id in rows:
    assert table[name.rsplit('_', 1)[0]] == (class_id, species, breed_id), name


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
  roots = [str(tmp_path / d) for d in ('a', 'b', 'c')]
  for root, seed in zip(roots, (7, 7, 8)):
    synthetic_pets.generate(root, 3, 2, seed=seed, **SIZES)
  a, b, c = (_hashes(r) for r in roots)
  assert len(a) == 5 * 2 + 3
  assert a == b
  assert a.keys() == c.keys()  # names do not depend on the seed ...
  for path in a:  # ... but every image and trimap does
    if not path.endswith('.txt'):
      assert a[path] != c[path], path


def test_defaults_and_counts_are_honoured(tmp_path):
  result = synthetic_pets.generate(str(tmp_path), num_trainval=2, num_test=1)
  for name in result['trainval'] + result['test']:
    with Image.open(os.path.join(str(tmp_path), 'images', name + '.jpg')) as image:
      assert all(160 <= s <= 240 for s in image.size)
  empty = synthetic_pets.generate(str(tmp_path / 'empty'), 0, 0)
  assert empty['trainval'] == [] and empty['test'] == []
  _, rows = _read_list(str(tmp_path / 'empty' / 'annotations' / 'list.txt'))
  assert rows == []


@pytest.mark.parametrize('kwargs', [
    dict(num_trainval=-1), dict(num_test=-1),
    dict(min_size=100, max_size=99), dict(min_size=8, max_size=64),
    dict(jpeg_quality=0)])
def test_rejects_bad_arguments(tmp_path, kwargs):
  with pytest.raises(ValueError):
    synthetic_pets.generate(str(tmp_path), **kwargs)


def test_cli_writes_dataset_and_prints_one_line(tmp_path):
  out = str(tmp_path / 'cli')
  proc = subprocess.run(
      [sys.executable, '-m', 'pipeline.tools.synthetic_pets', '--out', out,
       '--num-trainval', '2', '--num-test', '1', '--seed', '3',
       '--min-size', '40', '--max-size', '50'],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1 and out in lines[0], proc.stdout
  assert len(os.listdir(os.path.join(out, 'images'))) == 3
  # The CLI and the function produce the same bytes for the same arguments.
  synthetic_pets.generate(str(tmp_path / 'api'), 2, 1, seed=3, min_size=40,
                          max_size=50)
  assert _hashes(out) == _hashes(str(tmp_path / 'api'))


def test_full_size_shape_is_the_official_releases():
  shape = synthetic_pets.full_size()
  assert (shape['num_trainval'], shape['num_test']) == (3680, 3669)
  assert shape['num_trainval'] + shape['num_test'] == 7349
  assert (shape['min_size'], shape['max_size']) == (300, 500)
  eighth = synthetic_pets.full_size(1 / 8)
  assert (eighth['num_trainval'], eighth['num_test']) == (460, 459)
  with pytest.raises(ValueError):
    synthetic_pets.full_size(0)


def test_full_size_photos_breeds_and_parallel_determinism(tmp_path):
  """Two pairs per breed at the full-size settings: 37 breeds (12 cats, 25 dogs),
  photo-sized JPEGs of typical size; two workers write the same bytes as one."""
  shape = dict(synthetic_pets.full_size(), num_trainval=37, num_test=37)
  serial = synthetic_pets.generate(str(tmp_path / 'serial'), workers=1, **shape)
  synthetic_pets.generate(str(tmp_path / 'parallel'), workers=2, **shape)
  assert _hashes(str(tmp_path / 'serial')) == _hashes(str(tmp_path / 'parallel'))
  _, rows = _read_list(str(tmp_path / 'serial' / 'annotations' / 'list.txt'))
  assert len(rows) == 74
  breeds = {name.rsplit('_', 1)[0]: species for name, _, species, _ in rows}
  assert len(breeds) == 37
  assert sorted(breeds.values()).count(1) == 12 and list(breeds.values()).count(2) == 25
  sizes = []
  for name in serial['trainval'] + serial['test']:
    path = tmp_path / 'serial' / 'images' / (name + '.jpg')
    with Image.open(path) as image:
      assert image.format == 'JPEG' and all(300 <= s <= 500 for s in image.size)
    sizes.append(path.stat().st_size)
  # The real sample's JPEGs average 92 KB.
  assert 60_000 < np.mean(sizes) < 130_000, np.mean(sizes)
