"""Deterministic synthetic pets in the official Oxford-IIIT Pet layout.

Writes `images/<Name>_<n>.jpg`, `annotations/trimaps/<Name>_<n>.png` (1=pet,
2=background, 3=border) and `annotations/{list,trainval,test}.txt`, so tests and
benchmarks can exercise ingestion without the real 800 MB download. Each "pet"
is a noisy, striped ellipse on a textured background whose colours differ
clearly from the pet's but change from image to image.

Usage:
  python -m pipeline.tools.synthetic_pets --out /tmp/pets --num-trainval 24 --num-test 8
  python -m pipeline.tools.synthetic_pets --out /tmp/pets --full-size [--fraction 0.125]

`--full-size` gives the real set's shape: 3,680 trainval + 3,669 test pairs, all
37 breeds (12 cats, 25 dogs), 300-500 px photos whose JPEGs are about as large
as the real ones (~90 KB; quality 97, as the synthetic texture is smoother).
"""
import argparse
import colorsys
import concurrent.futures
import io
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

# The 37 official breeds; capitalised = cat, lowercase = dog (the dataset's own rule).
BREEDS = (
    'Abyssinian', 'american_bulldog', 'american_pit_bull_terrier', 'basset_hound',
    'beagle', 'Bengal', 'Birman', 'Bombay', 'boxer', 'British_Shorthair',
    'chihuahua', 'Egyptian_Mau', 'english_cocker_spaniel', 'english_setter',
    'german_shorthaired', 'great_pyrenees', 'havanese', 'japanese_chin',
    'keeshond', 'leonberger', 'Maine_Coon', 'miniature_pinscher', 'newfoundland',
    'Persian', 'pomeranian', 'pug', 'Ragdoll', 'Russian_Blue', 'saint_bernard',
    'samoyed', 'scottish_terrier', 'shiba_inu', 'Siamese', 'Sphynx',
    'staffordshire_bull_terrier', 'wheaten_terrier', 'yorkshire_terrier',
)

# Header of the official list.txt, byte for byte (typos and the swapped
# "1-25:Cat 1:12:Dog" included), so parsers are tested against the real thing.
HEADER = (
    '#Image CLASS-ID SPECIES BREED ID',
    '#ID: 1:37 Class ids',
    '#SPECIES: 1:Cat 2:Dog',
    '#BREED ID: 1-25:Cat 1:12:Dog',
    '#All images with 1st letter as captial are cat images',
    '#images with small first letter are dog images',
)

JPEG_QUALITY = 90
# The official release: 7,349 pairs, photos mostly 300-500 px a side, JPEGs
# ~90 KB on average (the real sample's mean is 92 KB).
FULL_SIZE = {'num_trainval': 3680, 'num_test': 3669, 'min_size': 300,
             'max_size': 500, 'jpeg_quality': 97}
PET, BACKGROUND, BORDER = 1, 2, 3  # trimap values


def breed_table() -> Dict[str, Tuple[int, int, int]]:
  """Maps each breed to its official (class id, species, breed id).

  Returns:
    {breed: (class_id 1..37, species 1=cat 2=dog, breed_id within species)}.
  """
  table = {}
  per_species = {1: 0, 2: 0}
  for class_id, breed in enumerate(sorted(BREEDS, key=str.lower), start=1):
    species = 1 if breed[0].isupper() else 2
    per_species[species] += 1
    table[breed] = (class_id, species, per_species[species])
  return table


def _hat_matrix(n_out: int, n_in: int) -> np.ndarray:
  """Linear-interpolation weights (n_out x n_in) from n_in knots to n_out pixels."""
  pos = np.linspace(0.0, n_in - 1.0, n_out, dtype=np.float32)
  return np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(n_in, dtype=np.float32)))


def _rgb(h: float, s: float, v: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def render(rng: np.random.Generator, min_size: int, max_size: int
           ) -> Tuple[np.ndarray, np.ndarray]:
  """Draws one synthetic pet.

  Args:
    rng: the image's own generator (all randomness comes from it).
    min_size: smallest width/height in pixels.
    max_size: largest width/height in pixels.

  Returns:
    (uint8 RGB image [H, W, 3], uint8 trimap [H, W] with values 1/2/3).
  """
  h, w = (int(x) for x in rng.integers(min_size, max_size + 1, size=2))

  # Colours: pet and background differ by >= 0.25 in value and >= 90 deg in hue,
  # and the pet is brighter or darker at random, so no single global colour
  # rule separates them across images.
  bg_h, bg_s, bg_v = rng.uniform(0, 1), rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.75)
  dv = rng.uniform(0.25, 0.45) * rng.choice((-1.0, 1.0))
  if not 0.1 <= bg_v + dv <= 1.0:
    dv = -dv
  pet_rgb = _rgb(bg_h + rng.uniform(0.25, 0.75), rng.uniform(0.35, 0.9), bg_v + dv)
  bg_rgb = _rgb(bg_h, bg_s, bg_v)

  # Background: low-frequency colour blotches (bilinear upsampling of a coarse
  # random grid via two small matrix products) plus a lighting gradient. Full-size
  # arrays are updated in place: fresh large temporaries cost more in page faults
  # than in arithmetic.
  gh, gw = (int(x) for x in rng.integers(3, 9, size=2))
  coarse = rng.normal(0.0, rng.uniform(10, 30), size=(3, gh, gw)).astype(np.float32)
  img = _hat_matrix(h, gh) @ coarse @ _hat_matrix(w, gw).T  # [3, H, W]
  img += bg_rgb[:, None, None]
  yy = np.arange(h, dtype=np.float32)[:, None]
  xx = np.arange(w, dtype=np.float32)[None, :]
  g = rng.uniform(-25, 25, size=2).astype(np.float32)
  img += g[0] * (yy / h - 0.5)
  img += g[1] * (xx / w - 0.5)

  # Pet ellipse in its own rotated frame (u along the first axis).
  cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
  a, b = rng.uniform(0.2, 0.45) * w, rng.uniform(0.2, 0.45) * h
  theta = rng.uniform(0, np.pi)
  cos_t, sin_t = np.float32(np.cos(theta)), np.float32(np.sin(theta))
  dy, dx = yy - np.float32(cy), xx - np.float32(cx)
  u = dx * cos_t + dy * sin_t
  v = dy * cos_t - dx * sin_t
  # f = (u/a)^2 + (v/b)^2 - 1 and the first-order (Sampson) distance to the
  # outline in pixels, f / |grad f|, with grad f = 2 (u/a^2, v/b^2).
  gu = u * np.float32(1 / (a * a))
  gv = v * np.float32(1 / (b * b))
  f = u * gu
  f += v * gv
  f -= 1.0
  gu *= gu
  gv *= gv
  gu += gv
  np.sqrt(gu, out=gu)
  gu *= 2.0
  gu += np.float32(1e-6)
  dist = np.divide(f, gu, out=gu)

  # Pet body: base colour, darker towards the rim, with fur-like stripes.
  # shade = 1 - 0.15 * r^2 inside (r^2 = f + 1), 0.85 outside; f is not needed later.
  shade = np.clip(f, -1.0, 0.0, out=f)
  shade *= -0.15
  shade += 0.85
  pet = pet_rgb[:, None, None] * shade
  stripes = np.multiply(u, np.float32(2 * np.pi / rng.uniform(6, 18)), out=u)
  stripes += np.float32(rng.uniform(0, 2 * np.pi))
  np.sin(stripes, out=stripes)
  stripes *= np.float32(rng.uniform(5, 20))
  pet += stripes
  # Two dark eyes near one end, inside the ellipse, so the pet is not uniform;
  # drawn in small windows around their centres (image = centre + R(theta) (u, v)).
  eye_r = 0.08 * min(a, b)
  for eu, ev in ((0.55 * a, 0.3 * b), (0.55 * a, -0.3 * b)):
    ex, ey = cx + eu * cos_t - ev * sin_t, cy + eu * sin_t + ev * cos_t
    y0, y1 = max(int(ey - eye_r), 0), min(int(ey + eye_r) + 2, h)
    x0, x1 = max(int(ex - eye_r), 0), min(int(ex + eye_r) + 2, w)
    eye = (yy[y0:y1] - ey) ** 2 + (xx[:, x0:x1] - ex) ** 2 < eye_r ** 2
    pet[:, y0:y1, x0:x1][:, eye] = 20.0

  # Anti-aliased compositing over ~1 px so the JPEG edge looks natural.
  pet -= img
  pet *= np.clip(0.5 - dist, 0.0, 1.0)
  img += pet
  # Uniform integer noise: ~6x cheaper than Gaussian and looks the same after JPEG.
  amp = int(rng.integers(5, 18))
  img += rng.integers(-amp, amp + 1, size=img.shape, dtype=np.int16)
  planes = np.clip(img, 0, 255, out=img).astype(np.uint8)
  image = np.empty((h, w, 3), dtype=np.uint8)
  for c in range(3):  # per-plane copy beats a strided transpose copy
    image[:, :, c] = planes[c]

  # Trimap: a 2-4 px border band straddling the outline, as in the real trimaps.
  half = np.float32(rng.uniform(1.0, 2.0))
  trimap = np.full((h, w), BACKGROUND, dtype=np.uint8)
  trimap[dist < half] = BORDER
  trimap[dist < -half] = PET
  return image, trimap


def _encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kwargs)
  return buf.getvalue()


def _write_pair(root: str, name: str, rng_key: Tuple[int, int, int],
                min_size: int, max_size: int, jpeg_quality: int) -> None:
  image, trimap = render(np.random.default_rng(list(rng_key)), min_size, max_size)
  with open(os.path.join(root, 'images', name + '.jpg'), 'wb') as f:
    f.write(_encode(image, 'JPEG', quality=jpeg_quality))
  with open(os.path.join(root, 'annotations', 'trimaps', name + '.png'), 'wb') as f:
    f.write(_encode(trimap, 'PNG'))


def generate(root: str, num_trainval: int = 24, num_test: int = 8, seed: int = 0,
             min_size: int = 160, max_size: int = 240,
             jpeg_quality: int = JPEG_QUALITY,
             workers: Optional[int] = None) -> Dict[str, object]:
  """Writes a synthetic dataset in the Oxford-IIIT Pet layout under `root`.

  Each split cycles through the 37 breeds, so both splits hold every breed as
  in the official release; numbers run per breed, trainval first, then test.
  Image `<Breed>_<n>` is drawn from `np.random.default_rng([seed, class_id, n])`,
  so its bytes depend only on (seed, name, sizes, quality), names not on the
  seed, and nothing on `workers`.
  Existing files with the same names are overwritten; others are left alone.

  Args:
    root: output directory (created if needed).
    num_trainval: number of images listed in trainval.txt.
    num_test: number of images listed in test.txt.
    seed: base seed.
    min_size: smallest image width/height in pixels (>= 32).
    max_size: largest image width/height in pixels.
    jpeg_quality: JPEG quality of the photos (1..100).
    workers: processes drawing images; default one per CPU core for large
      sets (>= 200 pairs), else 1 (start-up would cost more than it saves).

  Returns:
    {'root': root, 'trainval': [names], 'test': [names]}, names in list-file order.

  Raises:
    ValueError: for negative counts or an invalid size range or quality.
  """
  if num_trainval < 0 or num_test < 0:
    raise ValueError(f'counts must be >= 0, got {num_trainval}, {num_test}')
  if not 32 <= min_size <= max_size:
    raise ValueError(f'need 32 <= min_size <= max_size, got {min_size}, {max_size}')
  if not 1 <= jpeg_quality <= 100:
    raise ValueError(f'need 1 <= jpeg_quality <= 100, got {jpeg_quality}')
  table = breed_table()
  os.makedirs(os.path.join(root, 'images'), exist_ok=True)
  os.makedirs(os.path.join(root, 'annotations', 'trimaps'), exist_ok=True)

  rows = {}  # name -> (sort key, list-file line)
  splits = {'trainval': [], 'test': []}
  jobs = []
  next_number = {breed: 1 for breed in BREEDS}
  for k in range(num_trainval + num_test):
    split = 'trainval' if k < num_trainval else 'test'
    breed = BREEDS[(k if split == 'trainval' else k - num_trainval) % len(BREEDS)]
    n = next_number[breed]
    next_number[breed] += 1
    name = f'{breed}_{n}'
    class_id, species, breed_id = table[breed]
    jobs.append((root, name, (seed, class_id, n), min_size, max_size, jpeg_quality))
    # The official files are ordered by class id, then image number.
    rows[name] = ((class_id, n), f'{name} {class_id} {species} {breed_id}')
    splits[split].append(name)

  if workers is None:
    workers = (os.cpu_count() or 1) if len(jobs) >= 200 else 1
  if workers > 1:
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
      # Consumed so that a worker's error is raised here.
      list(pool.map(_write_pair, *zip(*jobs), chunksize=16))
  else:
    for job in jobs:
      _write_pair(*job)

  for split in splits:
    splits[split].sort(key=lambda n: rows[n][0])
  for list_name, names in (('list', sorted(rows, key=lambda n: rows[n][0])),
                           ('trainval', splits['trainval']), ('test', splits['test'])):
    lines = list(HEADER) + [rows[n][1] for n in names]
    with open(os.path.join(root, 'annotations', list_name + '.txt'), 'w',
              newline='\n') as f:
      f.write('\n'.join(lines) + '\n')
  return {'root': root, 'trainval': splits['trainval'], 'test': splits['test']}


def full_size(fraction: float = 1.0) -> Dict[str, int]:
  """`generate` keyword arguments for the real set's shape, or a fraction of it
  (counts rounded, at least one pair a split)."""
  if not 0 < fraction <= 1:
    raise ValueError(f'need 0 < fraction <= 1, got {fraction}')
  return dict(FULL_SIZE,
              num_trainval=max(1, round(FULL_SIZE['num_trainval'] * fraction)),
              num_test=max(1, round(FULL_SIZE['num_test'] * fraction)))


def main(argv: List[str] = None) -> None:
  """CLI entry point; prints one summary line."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='output root directory')
  parser.add_argument('--num-trainval', type=int, default=24)
  parser.add_argument('--num-test', type=int, default=8)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--min-size', type=int, default=160)
  parser.add_argument('--max-size', type=int, default=240)
  parser.add_argument('--jpeg-quality', type=int, default=JPEG_QUALITY)
  parser.add_argument('--full-size', action='store_true',
                      help="the real set's shape (replaces the four options above)")
  parser.add_argument('--fraction', type=float, default=1.0,
                      help='with --full-size: this fraction of it, e.g. 0.125')
  parser.add_argument('--workers', type=int, default=None,
                      help='processes (default: one per core for >= 200 pairs)')
  args = parser.parse_args(argv)
  shape = (full_size(args.fraction) if args.full_size else
           dict(num_trainval=args.num_trainval, num_test=args.num_test,
                min_size=args.min_size, max_size=args.max_size,
                jpeg_quality=args.jpeg_quality))
  start = time.perf_counter()
  result = generate(args.out, seed=args.seed, workers=args.workers, **shape)
  elapsed = time.perf_counter() - start
  total = len(result['trainval']) + len(result['test'])
  print(f'wrote {total} synthetic pets ({len(result["trainval"])} trainval, '
        f'{len(result["test"])} test, {shape["min_size"]}-{shape["max_size"]} px, '
        f'seed {args.seed}) to {args.out} in {elapsed:.1f}s '
        f'({total / max(elapsed, 1e-9):.0f} pairs/s)')


if __name__ == '__main__':
  main()
