"""How each component's cost grows with the data: 1/8, 1/2 and the full set.

For each size, synthetic pets in the real set's shape (`synthetic_pets
--full-size`: 7,349 pairs, 37 breeds, 300-500 px photos) go through the whole
pipeline once (`local_runner.py --epochs 1`, the pretrained frozen encoder when
its file exists, else a random one), as a subprocess whose process tree is
sampled for RSS. ML Metadata gives each component's execution window, so the
table shows per component: seconds, seconds per 1,000 pairs, the peak RSS of
the run's processes while it ran (the runner, and Beam workers when
multi-processing), and the disk its output artifacts take. The last columns
compare per-pair cost and peak RSS of the largest size with the smallest.

  python benchmarks/scale_benchmark.py [--fractions 0.125 0.5 1] [--work-dir DIR]

Targets (issue 13): no component's per-pair cost grows more than 1.2x from the
smallest to the largest size; a full-size run peaks at <= 4 GiB RSS, at most
1 GiB more than the 1/8 run.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

import psutil

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from pipeline import runs
from pipeline.tools import synthetic_pets
from tests import kit

DEFAULT_WEIGHTS = REPO / '.cache' / 'encoders' / (
    'mobilenet_v2_stanford_dogs_128_no_top.weights.h5')
GIB = 1024 ** 3
MAX_GROWTH = 1.2
MAX_PEAK_GIB = 4.0
MAX_PEAK_GROWTH_GIB = 1.0
# Components too quick for a per-pair cost to mean anything.
MIN_SECONDS_TO_COMPARE = 2.0


class RssSampler(threading.Thread):
  """Samples the RSS of a process and its descendants every `interval` s."""

  def __init__(self, pid: int, interval: float = 0.2):
    super().__init__(daemon=True)
    self._root = psutil.Process(pid)
    self._interval = interval
    self._halt = threading.Event()
    self.samples: List[Tuple[float, int, int]] = []  # (time, runner, workers)

  def run(self):
    while not self._halt.is_set():
      try:
        runner = self._root.memory_info().rss
        workers = 0
        for child in self._root.children(recursive=True):
          # A worker may exit between being listed and being read.
          with contextlib.suppress(psutil.Error):
            workers += child.memory_info().rss
        self.samples.append((time.time(), runner, workers))
      except psutil.Error:
        break
      self._halt.wait(self._interval)

  def stop(self):
    self._halt.set()
    self.join()

  def peak(self, start: float = 0.0, end: float = float('inf')) -> Tuple[int, int]:
    """(runner + workers, workers) peak bytes between `start` and `end` (epoch s)."""
    window = [s for s in self.samples if start <= s[0] <= end] or self.samples[-1:]
    return (max((r + w for _, r, w in window), default=0),
            max((w for _, _, w in window), default=0))


@dataclasses.dataclass
class SizeResult:
  pairs: int
  generate_seconds: float
  run_seconds: float
  peak_rss: int
  peak_workers_rss: int
  components: Dict[str, Dict[str, float]]
  plain_loop_seconds_per_pair: float


def disk_bytes(uri: str) -> int:
  total = 0
  for dirpath, _, files in os.walk(uri):
    total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
  return total


def run_size(fraction: float, work_dir: pathlib.Path, encoder: List[str],
             extra_args: List[str]) -> SizeResult:
  """Generates the data for `fraction`, runs the pipeline once, measures it."""
  data, out = work_dir / f'pets_{fraction:g}', work_dir / f'out_{fraction:g}'
  start = time.perf_counter()
  listed = synthetic_pets.generate(str(data), **synthetic_pets.full_size(fraction))
  generate_seconds = time.perf_counter() - start
  pairs = len(listed['trainval']) + len(listed['test'])
  command = [sys.executable, str(REPO / 'local_runner.py'), '--data-root', str(data),
             '--output-dir', str(out), '--epochs', '1', '--report-images', '0',
             *encoder, *extra_args]
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  sampler = RssSampler(proc.pid)
  sampler.start()
  output, _ = proc.communicate()
  sampler.stop()
  run_seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f'pipeline failed ({proc.returncode}):\n{output[-3000:]}')
  summary = json.loads((out / 'run_summary.json').read_text())
  run = kit.read_run(out, summary['run_id'])
  components = {}
  for name, node in run.nodes.items():
    begin = node.execution.create_time_since_epoch / 1000
    end = node.execution.last_update_time_since_epoch / 1000
    peak, workers = sampler.peak(begin, end)
    components[name] = {
        'seconds': node.seconds, 'peak_rss': peak, 'peak_workers_rss': workers,
        'disk': sum(disk_bytes(a.uri) for artifacts in node.outputs.values()
                    for a in artifacts if a.uri and os.path.isdir(a.uri))}
  peak, workers = sampler.peak()
  loop = plain_loop_seconds_per_pair(
      run.output('PetExampleGen', 'examples').uri, str(work_dir / 'plain_loop.gz'))
  return SizeResult(pairs, generate_seconds, run_seconds, peak, workers, components,
                    loop)


def plain_loop_seconds_per_pair(examples_uri: str, out_file: str) -> float:
  """What Transform does, as a plain single-process TensorFlow loop.

  Reads the ExampleGen's records (both splits), decodes and resizes image and
  mask with Transform's own functions, serializes the int64 tf.Examples and
  writes them GZIP'd: Transform's per-pair work without Beam or TFT.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components import features  # pylint: disable=g-import-not-at-top
  from components.transform import module as transform  # pylint: disable=g-import-not-at-top
  files = sorted(str(p) for p in pathlib.Path(examples_uri).glob('Split-*/*.gz'))
  spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
          features.MASK_KEY: tf.io.FixedLenFeature([], tf.string)}
  decode = tf.function(lambda image, mask: (transform.decode_image(image),
                                            transform.decode_mask(mask)))
  int64 = lambda a: tf.train.Feature(int64_list=tf.train.Int64List(value=a.ravel().tolist()))
  pairs = 0
  start = time.perf_counter()
  with tf.io.TFRecordWriter(out_file, 'GZIP') as writer:
    for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
      parsed = tf.io.parse_single_example(record, spec)
      image, mask = decode(parsed[features.IMAGE_KEY], parsed[features.MASK_KEY])
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          features.IMAGE_XF_KEY: int64(image.numpy()),
          features.MASK_XF_KEY: int64(mask.numpy())})).SerializeToString())
      pairs += 1
  return (time.perf_counter() - start) / pairs


def growth(small: SizeResult, large: SizeResult, name: str) -> Optional[float]:
  """Per-pair cost at `large` / at `small`, or None for components too quick."""
  a, b = small.components.get(name), large.components.get(name)
  if not a or not b or a['seconds'] < MIN_SECONDS_TO_COMPARE:
    return None
  return (b['seconds'] / large.pairs) / (a['seconds'] / small.pairs)


def format_table(results: Dict[float, SizeResult]) -> str:
  fractions = sorted(results)
  small, large = results[fractions[0]], results[fractions[-1]]
  names = list(large.components)
  head = ['component'] + [f'{f:g} ({results[f].pairs} pairs): s | s/1k | RSS GiB | disk MB'
                          for f in fractions] + ['per-pair growth']
  lines = [' | '.join(head), ' | '.join(['---'] * len(head))]
  for name in names:
    cells = [name]
    for f in fractions:
      c = results[f].components.get(name)
      cells.append('-' if c is None else
                   f"{c['seconds']:.1f} | {1000 * c['seconds'] / results[f].pairs:.1f} | "
                   f"{c['peak_rss'] / GIB:.2f} | {c['disk'] / 1e6:.0f}")
    g = growth(small, large, name)
    cells.append('-' if g is None else f'{g:.2f}x')
    lines.append(' | '.join(cells))
  for label, value in (
      ('whole run, s', lambda r: f'{r.run_seconds:.0f}'),
      ('peak RSS GiB (workers)', lambda r: f'{r.peak_rss / GIB:.2f} ({r.peak_workers_rss / GIB:.2f})'),
      ('synthetic data: pairs/s', lambda r: f'{r.pairs / r.generate_seconds:.0f}'),
      ('Transform output, KB/pair on disk', lambda r: (
          f"{r.components['Transform']['disk'] / r.pairs / 1024:.1f}")),
      ('Transform ms/pair vs plain loop', lambda r: (
          f"{1000 * r.components['Transform']['seconds'] / r.pairs:.1f} vs "
          f'{1000 * r.plain_loop_seconds_per_pair:.1f}'))):
    lines.append(' | '.join([label] + [value(results[f]) for f in fractions] + ['']))
  return '\n'.join(lines)


def check_targets(results: Dict[float, SizeResult]) -> List[str]:
  """The issue's targets that the measured numbers miss (empty: all met)."""
  fractions = sorted(results)
  small, large = results[fractions[0]], results[fractions[-1]]
  missed = []
  for name in large.components:
    g = growth(small, large, name)
    if g is not None and g > MAX_GROWTH:
      missed.append(f'{name}: per-pair cost grew {g:.2f}x (> {MAX_GROWTH}x)')
  transform = large.components['Transform']['seconds'] / large.pairs
  if transform > large.plain_loop_seconds_per_pair:
    missed.append(f'Transform {1000 * transform:.1f} ms/pair, slower than the plain '
                  f'loop ({1000 * large.plain_loop_seconds_per_pair:.1f} ms/pair)')
  if large.peak_rss > MAX_PEAK_GIB * GIB:
    missed.append(f'peak RSS {large.peak_rss / GIB:.2f} GiB (> {MAX_PEAK_GIB} GiB)')
  if large.peak_rss - small.peak_rss > MAX_PEAK_GROWTH_GIB * GIB:
    missed.append(f'peak RSS grew {(large.peak_rss - small.peak_rss) / GIB:.2f} GiB '
                  f'(> {MAX_PEAK_GROWTH_GIB} GiB)')
  return missed


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--fractions', type=float, nargs='+', default=[0.125, 0.5, 1.0],
                      help='sizes, as fractions of the full 7,349 pairs')
  parser.add_argument('--work-dir', default=None,
                      help='where data and runs go (default: a temporary dir, removed)')
  parser.add_argument('--encoder-weights', default=str(DEFAULT_WEIGHTS),
                      help="pretrained encoder file (frozen); 'none' or a missing "
                           'file trains a random encoder')
  parser.add_argument('--json', default=None, help='also write the results here')
  parser.add_argument('runner_args', nargs='*',
                      help='after --: more local_runner.py flags, e.g. --beam-arg=...')
  return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  from pipeline import console  # pylint: disable=g-import-not-at-top
  console.quiet_environment()  # before TensorFlow is imported (the plain loop)
  encoder = (['--encoder-weights', args.encoder_weights, '--freeze-encoder']
             if os.path.isfile(args.encoder_weights) else
             ['--encoder-weights', 'none', '--train-encoder'])
  with tempfile.TemporaryDirectory(prefix='scale_') as tmp:
    work_dir = pathlib.Path(args.work_dir or tmp)
    results = {}
    for fraction in sorted(args.fractions):
      results[fraction] = run_size(fraction, work_dir, encoder, args.runner_args)
      print(f'{fraction:g}: {results[fraction].pairs} pairs in '
            f'{results[fraction].run_seconds:.0f} s', flush=True)
  print(f'encoder: {" ".join(encoder)}')
  print(format_table(results))
  missed = check_targets(results)
  print('targets: ' + ('all met' if not missed else 'MISSED: ' + '; '.join(missed)))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({str(k): dataclasses.asdict(v) for k, v in results.items()}, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
