"""Ingestion throughput: the PetExampleGen's Beam transform vs a plain loop.

Issue "Throughput, measured". One run ingests the same Oxford-IIIT Pet layout
(N synthetic pets of 300-500 px, generated once into a temporary folder, or
reused from `--data DIR`) three ways and prints pairs/s for each:

  plain             one process, one loop: for every list line
                    `records.make_record(data_root, columns)` (the
                    executor's DoFn calls exactly this), write with
                    `tf.io.TFRecordWriter` (GZIP); rejects go to a
                    quarantine .jsonl as the executor writes them. The exact
                    same per-record work as the executor's DoFn, without Beam.
  in_memory         `executor.Executor(...).Do(...)`, called the way TFX's
                    executor tests call it, on the DirectRunner with
                    `--direct_running_mode=in_memory`.
  multi_processing  the same with `--direct_running_mode=multi_processing
                    --direct_num_workers=2` (`--workers`).

`--modes` can add `multi_threading` (same flags, threads instead of processes).
Rates are listed pairs (written + quarantined) per wall-clock second of the
ingestion alone: imports, data generation, a warm-up (one record through
`make_record` and a GZIP TFRecord writer, one trivial in-memory Beam pipeline)
and the output checks are outside the timed region. A Beam run's time is the
whole `Do()`: pipeline construction, SDK worker start-up and shutdown
(multi_processing workers are fresh Python processes: each imports Beam,
~5 CPU s, before its first record; the executor keeps TensorFlow and TFX out
of them, see components/example_gen/records.py) and the executor's count
checks.
The executor's constructor is timed apart ("init": with beam args that name no
--setup_file/--extra_packages, TFX builds an ephemeral sdist of itself there).

Wall-clock ratios depend on whatever else the machine runs, so each ratio is
printed with a ceiling from CPU time, which hardly does: on an idle machine
the plain loop keeps one core busy and a mode at most `cores` (1 for
in_memory, else min(workers, CPUs)), so its ratio is at most
cores * cpu(plain) / cpu(mode).

Memory: with psutil, a thread samples every 50 ms the RSS of this process and
the summed RSS of all its descendants (the SDK workers); always, the kernel's
high-water marks from `resource.getrusage`: RUSAGE_SELF (this process, over its
whole life so far, so it never decreases from one mode to the next) and
RUSAGE_CHILDREN (the largest single descendant reaped so far).

Outputs are checked after timing: every mode must write the same records per
split (count and an order-independent SHA-256 digest of the canonically
serialised records, read back from the files) and the same quarantine (count
and (file name, reason) pairs). The "written" column is what the executor
counted, so a mode that counts more than it writes is caught here (this has
happened with multi_threading). Generated data includes `--num-bad` broken
pairs so the quarantine path is exercised too.

Usage (from the repository root):
  .venv/bin/python benchmarks/ingest_benchmark.py [--num-images 5000]
      [--data DIR] [--repeats 1] [--workers 2] [--modes ...] [--probe-small K]

Exit status: 0 outputs agree (targets are reported, and only enforced with
`--strict`: 3 when one is missed), 1 outputs differ, 2 bad arguments.
"""
import argparse
import hashlib
import json
import os
import pathlib
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Dict, List, Optional, Tuple

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Before TensorFlow is imported; inherited by the multi_processing SDK workers.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('PYTHONWARNINGS', 'ignore::FutureWarning')
# Runnable as `python benchmarks/ingest_benchmark.py` without `pip install -e`;
# the SDK workers (fresh interpreters) find the packages through PYTHONPATH.
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))
os.environ['PYTHONPATH'] = os.pathsep.join(
    p for p in (str(REPO_ROOT), os.environ.get('PYTHONPATH')) if p)
warnings.filterwarnings('ignore', category=FutureWarning)

# pylint: disable=g-import-not-at-top,wrong-import-position
import apache_beam as beam
from absl import logging as absl_logging
import numpy as np
from PIL import Image
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts, standard_component_specs

from components.example_gen import component, executor, records, validation
from pipeline.tools import synthetic_pets

try:
  import psutil
except ImportError:  # The kernel's high-water marks are still reported.
  psutil = None
# pylint: enable=g-import-not-at-top,wrong-import-position

PLAIN = 'plain'
BEAM_MODES = ('in_memory', 'multi_processing', 'multi_threading')
ALL_MODES = (PLAIN,) + BEAM_MODES
DEFAULT_MODES = (PLAIN, 'in_memory', 'multi_processing')
MIN_SIZE, MAX_SIZE = 300, 500
MIN_VALID_FRACTION = 0.5
# Issue targets: rate(mode) / rate(plain) at least this.
TARGETS = {'multi_processing': 1.5, 'in_memory': 0.8}
SAMPLE_SECONDS = 0.05
MB = 1024 * 1024


# --- data ---------------------------------------------------------------------

def _break_pairs(root: str, names: List[str], num_bad: int) -> List[str]:
  """Damages `num_bad` pairs, spread evenly, in four ways the executor rejects.

  Args:
    root: the generated layout.
    names: all generated names.
    num_bad: how many pairs to damage.

  Returns:
    The damaged names.
  """
  num_bad = min(num_bad, len(names))
  broken = [names[(2 * i + 1) * len(names) // (2 * num_bad)]
            for i in range(num_bad)]
  for i, name in enumerate(broken):
    image = os.path.join(root, 'images', name + '.jpg')
    trimap = os.path.join(root, 'annotations', 'trimaps', name + '.png')
    kind = i % 4
    if kind == 0:  # Truncated JPEG: PIL's full decode fails.
      with open(image, 'rb') as f:
        data = f.read()
      with open(image, 'wb') as f:
        f.write(data[:len(data) // 2])
    elif kind == 1:  # Empty trimap.
      open(trimap, 'wb').close()
    elif kind == 2:  # Listed, but no image file.
      os.remove(image)
    else:  # A valid trimap of the wrong size.
      Image.fromarray(np.ones((16, 16), dtype=np.uint8)).save(trimap, 'PNG')
  return broken


def prepare_data(data: Optional[str], num_images: int, num_bad: int,
                 work_dir: str) -> Tuple[str, str]:
  """Returns (data root, how it was obtained), generating the layout if needed.

  Args:
    data: `--data`: reused when it holds annotations/trainval.txt, else
      generated there; None: generated under `work_dir`.
    num_images: pairs to generate (about half trainval, half test, as in the
      official release).
    num_bad: pairs to break after generating (never done to reused data).
    work_dir: this run's temporary folder.
  """
  root = data or os.path.join(work_dir, 'data')
  if data and os.path.isfile(os.path.join(data, component.TRAIN_LIST)):
    return root, f'reused {root}'
  start = time.perf_counter()
  result = synthetic_pets.generate(
      root, num_trainval=(num_images + 1) // 2, num_test=num_images // 2,
      seed=0, min_size=MIN_SIZE, max_size=MAX_SIZE)
  broken = _break_pairs(root, result['trainval'] + result['test'], num_bad)
  return root, (f'generated {num_images} pairs ({MIN_SIZE}-{MAX_SIZE} px, '
                f'{len(broken)} broken on purpose) into {root} in '
                f'{time.perf_counter() - start:.1f}s')


def list_entries(input_base: str) -> Dict[str, List[List[str]]]:
  """Split name -> the list-file entries (columns) the executor will read."""
  entries = {}
  for split in component.input_config(spans=False).splits:
    with tf.io.gfile.GFile(os.path.join(input_base, split.pattern)) as f:
      entries[split.name] = [c for c in map(records.parse_list_line, f) if c]
  return entries


def make_subset(input_base: str, per_list: int, work_dir: str) -> str:
  """A layout listing only the first `per_list` entries of each list file.

  Images and trimaps are symlinked, not copied.
  """
  root = os.path.join(work_dir, f'subset-{per_list}')
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
  for link, target in (('images', 'images'),
                       (os.path.join('annotations', 'trimaps'),
                        os.path.join('annotations', 'trimaps'))):
    if not os.path.lexists(os.path.join(root, link)):
      os.symlink(os.path.abspath(os.path.join(input_base, target)),
                 os.path.join(root, link))
  for split in component.input_config(spans=False).splits:
    with open(os.path.join(input_base, split.pattern)) as f:
      lines = [l for l in f if records.parse_list_line(l)][:per_list]
    with open(os.path.join(root, split.pattern), 'w') as f:
      f.writelines(lines)
  return root


# --- measurement --------------------------------------------------------------

class Sampler:
  """Peak RSS of this process and of all its descendants while in the block.

  Uses psutil when installed (sampled every SAMPLE_SECONDS); the peaks are None
  without it. The kernel's getrusage high-water marks are read on exit.
  """

  def __init__(self):
    self.peak_self = None
    self.peak_children = None
    self.ru_self = None
    self.ru_children = None
    self._stop = threading.Event()
    self._thread = None

  def _sample(self) -> None:
    proc = psutil.Process()
    while True:
      rss_self, rss_children = proc.memory_info().rss, 0
      for child in proc.children(recursive=True):
        try:
          rss_children += child.memory_info().rss
        except psutil.Error:  # Exited between listing and reading.
          pass
      self.peak_self = max(self.peak_self or 0, rss_self)
      self.peak_children = max(self.peak_children or 0, rss_children)
      if self._stop.wait(SAMPLE_SECONDS):
        return

  def __enter__(self) -> 'Sampler':
    if psutil is not None:
      self._thread = threading.Thread(target=self._sample, daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
    # Linux reports ru_maxrss in KiB.
    self.ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    self.ru_children = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


def _cpu_seconds() -> float:
  """User + system CPU of this process and its reaped descendants."""
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def _load() -> float:
  return os.getloadavg()[0]


def ingest_plain(input_base: str, out_dir: str) -> Dict[str, Dict[str, int]]:
  """The executor's per-record work in one loop; same output layout.

  Args:
    input_base: the layout (list files relative to it, as in input_config).
    out_dir: gets Split-<name>/data_tfrecord-00000-of-00001.gz and
      quarantine/<list>.{jsonl,counts.json}.

  Returns:
    Split name -> {'examples': n, 'rejected': n}.
  """
  quarantine_dir = os.path.join(out_dir, executor.QUARANTINE_DIR)
  tf.io.gfile.makedirs(quarantine_dir)
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  counts = {}
  for split in component.input_config(spans=False).splits:
    list_file = os.path.join(input_base, split.pattern)
    data_root = records.layout_root(list_file)
    split_dir = os.path.join(out_dir, f'Split-{split.name}')
    tf.io.gfile.makedirs(split_dir)
    written, rejected = 0, []
    with tf.io.TFRecordWriter(
        os.path.join(split_dir, 'data_tfrecord-00000-of-00001.gz'),
        options) as writer, tf.io.gfile.GFile(list_file) as lines:
      for line in lines:
        columns = records.parse_list_line(line)
        if columns is None:
          continue
        try:
          record = records.make_record(data_root, columns)
        except validation.BadInput as e:
          rejected.append(records.quarantine_record(list_file, columns, str(e)))
          continue
        writer.write(record)
        written += 1
    stem = os.path.join(quarantine_dir, executor.list_name(split.pattern))
    with tf.io.gfile.GFile(stem + '.jsonl', 'w') as f:
      f.write(''.join(r + '\n' for r in rejected))
    with tf.io.gfile.GFile(stem + '.counts.json', 'w') as f:
      f.write(records.counts_record(written, len(rejected), list_file) + '\n')
    counts[split.name] = {'examples': written, 'rejected': len(rejected)}
  return counts


def beam_executor(beam_args: List[str]) -> executor.Executor:
  """The executor with beam_pipeline_args in its context, as TFX builds it.

  With beam args that name no --setup_file/--extra_packages, TFX's constructor
  builds an ephemeral sdist of TFX itself (seconds); it is timed apart.
  """
  return executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=beam_args))


def ingest_beam(pet_executor: executor.Executor, input_base: str,
                out_dir: str) -> Dict[str, Dict[str, int]]:
  """Runs the PetExampleGen executor's Do() as TFX's executor tests do.

  Args:
    pet_executor: from beam_executor().
    input_base: the layout.
    out_dir: the Examples artifact's uri.

  Returns:
    Split name -> {'examples': n, 'rejected': n}, from the artifact.
  """
  examples = standard_artifacts.Examples()
  examples.uri = out_dir
  exec_properties = component.executor_properties(
      input_base, {'min_valid_fraction': MIN_VALID_FRACTION})
  pet_executor.Do(
      {}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
  return json.loads(
      examples.get_string_custom_property(executor.SPLIT_COUNTS_PROPERTY))


def beam_args_for(mode: str, workers: int) -> List[str]:
  args = ['--runner=DirectRunner', f'--direct_running_mode={mode}']
  if mode != 'in_memory':
    args.append(f'--direct_num_workers={workers}')
  return args


def run_mode(mode: str, input_base: str, out_dir: str, workers: int
             ) -> Dict[str, Any]:
  """Ingests once in `mode`; returns timing, memory and counts."""
  init = 0.0
  if mode != PLAIN:
    start = time.perf_counter()
    pet_executor = beam_executor(beam_args_for(mode, workers))
    init = time.perf_counter() - start
  load = _load()
  cpu = _cpu_seconds()
  with Sampler() as mem:
    start = time.perf_counter()
    if mode == PLAIN:
      counts = ingest_plain(input_base, out_dir)
    else:
      counts = ingest_beam(pet_executor, input_base, out_dir)
    seconds = time.perf_counter() - start
  listed = sum(c['examples'] + c['rejected'] for c in counts.values())
  return {'mode': mode, 'out_dir': out_dir, 'seconds': seconds,
          'rate': listed / seconds, 'listed': listed, 'counts': counts,
          'cpu': _cpu_seconds() - cpu, 'load': load, 'mem': mem, 'init': init}


def warm_up(input_base: str, entries: Dict[str, List[List[str]]],
            work_dir: str) -> None:
  """Pays one-off costs outside the timed region.

  One record through make_record and a GZIP TFRecordWriter (PIL plugins,
  TF's file systems), and one trivial in-memory Beam pipeline that writes a
  GZIP TFRecord (the runner's lazily imported modules).
  """
  warm_dir = os.path.join(work_dir, 'warm-up')
  tf.io.gfile.makedirs(warm_dir)
  split = component.input_config(spans=False).splits[0]
  data_root = records.layout_root(os.path.join(input_base, split.pattern))
  record = b'warm-up'
  for columns in entries[split.name][:8]:
    try:
      record = records.make_record(data_root, columns)
      break
    except validation.BadInput:
      continue
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  with tf.io.TFRecordWriter(os.path.join(warm_dir, 'plain.gz'), options) as w:
    w.write(record)
  with beam.Pipeline(argv=beam_args_for('in_memory', 1)) as pipeline:
    _ = (pipeline | beam.Create([record]) | beam.Reshuffle()
         | beam.io.WriteToTFRecord(os.path.join(warm_dir, 'beam'),
                                   file_name_suffix='.gz'))


# --- checks -------------------------------------------------------------------

def output_signature(out_dir: str, splits: List[str]) -> Dict[str, Any]:
  """Per split: record count and an order-independent digest; the quarantine."""
  signature = {}
  for split in splits:
    files = sorted(tf.io.gfile.glob(
        os.path.join(out_dir, f'Split-{split}', '*.gz')))
    # Canonical bytes: map entries may serialise in any order (the Beam path
    # round-trips the protos through a coder, the plain loop does not).
    digests = sorted(
        hashlib.sha256(tf.train.Example.FromString(r.numpy()).SerializeToString(
            deterministic=True)).digest()
        for r in tf.data.TFRecordDataset(files, compression_type='GZIP'))
    signature[split] = (len(digests),
                        hashlib.sha256(b''.join(digests)).hexdigest()[:16])
  rejects = executor.read_quarantine(
      os.path.join(out_dir, executor.QUARANTINE_DIR))
  signature['quarantine'] = sorted((r['file_name'], r['reason'])
                                   for r in rejects)
  return signature


# --- report -------------------------------------------------------------------

def _mb(num_bytes: Optional[int]) -> str:
  return '-' if num_bytes is None else f'{num_bytes / MB:.0f}'


def _label(mode: str, workers: int) -> str:
  return mode if mode in (PLAIN, 'in_memory') else f'{mode} x{workers}'


def print_row(result: Dict[str, Any], workers: int, repeat: int) -> None:
  mem = result['mem']
  written = sum(c['examples'] for c in result['counts'].values())
  rejected = sum(c['rejected'] for c in result['counts'].values())
  init = f'{result["init"]:.1f}' if result['mode'] != PLAIN else '-'
  print(f'{repeat:>3} {_label(result["mode"], workers):<20}'
        f'{result["seconds"]:>8.2f}{result["rate"]:>9.1f}{result["cpu"]:>7.1f}'
        f'{init:>6}{written:>8}{rejected:>6}{_mb(mem.peak_self):>7}'
        f'{_mb(mem.peak_children):>8}{_mb(mem.ru_self):>8}'
        f'{_mb(mem.ru_children):>8}{result["load"]:>6.1f}', flush=True)


HEADER = (f'{"rep":>3} {"mode":<20}{"seconds":>8}{"pairs/s":>9}{"cpu s":>7}'
          f'{"init":>6}{"written":>8}{"quar.":>6}{"RSS":>7}{"RSSkids":>8}'
          f'{"maxself":>8}{"maxkid":>8}{"load":>6}')


LEGEND = """\
  seconds   wall time of the ingestion alone (Do() for Beam); pairs/s = listed
            pairs (written + quarantined) / seconds
  cpu s     user+sys CPU of this process and its reaped children (SDK workers)
  init      seconds in the executor's constructor, not counted in the rate (TFX
            builds an ephemeral TFX sdist for beam args without --setup_file)
  RSS       peak RSS of this process, MiB
            ({sampled})
  RSSkids   peak of the summed RSS of its descendants, MiB (same sampling)
  maxself   getrusage(RUSAGE_SELF).ru_maxrss: lifetime high-water mark, MiB
  maxkid    getrusage(RUSAGE_CHILDREN).ru_maxrss: largest reaped descendant so
            far (forked helpers included), MiB
  load      1-minute load average when the run started"""


def _ratio_line(rates: Dict[str, float], cpu: Dict[str, float], mode: str,
                workers: int) -> str:
  """One mode's rate against the plain loop's, and a ceiling from CPU time.

  On an idle machine the plain loop runs at one full core, and a mode can at
  best keep `cores` CPUs busy the whole time (1 for in_memory, else
  min(workers, CPUs)), so its ratio is at most cores * cpu(plain) / cpu(mode).
  CPU seconds hardly depend on other jobs; wall-clock ratios do.
  """
  ratio = rates[mode] / rates[PLAIN]
  cores = 1 if mode == 'in_memory' else min(workers, os.cpu_count() or 1)
  bound = cores * cpu[PLAIN] / cpu[mode]
  target = TARGETS.get(mode)
  verdict = ('' if target is None else
             f' target >= {target}x: {"OK" if ratio >= target else "MISSED"};')
  return (f'  {_label(mode, workers) + " / plain":<29} = {ratio:.2f}x;{verdict}'
          f' idle-machine ceiling from CPU time <= {bound:.2f}x '
          f'({cpu[mode]:.1f} vs {cpu[PLAIN]:.1f} cpu s, {cores} '
          f'core{"s" if cores > 1 else ""})')


def probe_fixed_cost(input_base: str, per_list: int, modes: List[str],
                     cpu: Dict[str, float], num_full: int, workers: int,
                     work_dir: str) -> None:
  """Splits each Beam mode's CPU time into a fixed part and a per-pair part.

  Runs each Beam mode once more on the first `per_list` entries of every list;
  from the two sizes, cpu(n) = fixed + n * per_pair. On an idle machine with
  `cores` usable cores the ratio to the plain loop is then at most
  cores * p * n / (fixed + per_pair * n), p = the plain loop's CPU per pair;
  prints from how many pairs that ceiling reaches the mode's target.
  """
  small_base = make_subset(input_base, per_list, work_dir)
  plain_per_pair = cpu[PLAIN] / num_full
  print(f'\nfixed cost (each Beam mode again on {per_list} entries per list; '
        f'plain: {plain_per_pair * 1e3:.2f} cpu ms per pair):')
  for mode in modes:
    if mode == PLAIN:
      continue
    small = run_mode(mode, small_base, os.path.join(
        work_dir, f'out-probe-{mode}'), workers)
    n_small = small['listed']
    per_pair = (cpu[mode] - small['cpu']) / max(num_full - n_small, 1)
    fixed = small['cpu'] - n_small * per_pair
    cores = 1 if mode == 'in_memory' else min(workers, os.cpu_count() or 1)
    target = TARGETS.get(mode, 1.0)
    line = (f'  {_label(mode, workers):<20} {n_small} pairs: '
            f'{small["seconds"]:.1f} s, {small["cpu"]:.1f} cpu s -> fixed '
            f'~{fixed:.1f} cpu s + '
            f'{per_pair * 1e3:.2f} cpu ms per pair; ')
    if per_pair <= 0:
      line += 'per-pair cost lost in the noise: use more pairs'
    elif cores * plain_per_pair > target * per_pair:
      need = target * fixed / (cores * plain_per_pair - target * per_pair)
      line += f'ceiling reaches {target}x from ~{max(need, 0):.0f} pairs'
    else:
      line += f'ceiling never reaches {target}x'
    print(line, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
  """Runs the benchmark; returns the exit status."""
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--num-images', type=int, default=5000,
                      help='pairs to generate (ignored when --data is reused)')
  parser.add_argument('--data', help='layout to reuse; generated there if it '
                      'holds no annotations/trainval.txt')
  parser.add_argument('--repeats', type=int, default=1,
                      help='runs of every mode (reported separately and as '
                      'the median)')
  parser.add_argument('--workers', type=int, default=2,
                      help='--direct_num_workers for multi_processing and '
                      'multi_threading')
  parser.add_argument('--modes', default=','.join(DEFAULT_MODES),
                      help=f'comma-separated, from {", ".join(ALL_MODES)} '
                      '(default: %(default)s)')
  parser.add_argument('--num-bad', type=int, default=10,
                      help='generated pairs broken on purpose (default 10)')
  parser.add_argument('--probe-small', type=int, default=0, metavar='K',
                      help='also run the Beam modes on K entries per list to '
                      'separate fixed from per-pair CPU cost')
  parser.add_argument('--keep', action='store_true',
                      help='keep the temporary folder (data and outputs)')
  parser.add_argument('--strict', action='store_true',
                      help='exit 3 when a throughput target is missed')
  args = parser.parse_args(argv)
  modes = [m for m in args.modes.split(',') if m]
  unknown = set(modes) - set(ALL_MODES)
  if (unknown or PLAIN not in modes or args.num_images < 1 or args.repeats < 1
      or args.workers < 1 or args.num_bad < 0 or args.probe_small < 0):
    parser.error('need --num-images, --repeats, --workers >= 1, --num-bad, '
                 f'--probe-small >= 0, and plain among --modes (unknown: '
                 f'{sorted(unknown)})')

  absl_logging.set_verbosity(absl_logging.WARNING)
  work_dir = tempfile.mkdtemp(prefix='ingest_benchmark_')
  try:
    input_base, origin = prepare_data(args.data, args.num_images, args.num_bad,
                                      work_dir)
    entries = list_entries(input_base)
    num_listed = sum(len(e) for e in entries.values())
    warm_up(input_base, entries, work_dir)
    print(f'data: {origin}')
    print(f'listed pairs: {num_listed} '
          f'({", ".join(f"{k} {len(v)}" for k, v in entries.items())}); '
          f'{os.cpu_count()} CPUs; load average {_load():.1f}; '
          f'beam {beam.__version__}, tensorflow {tf.__version__}')
    print(HEADER, flush=True)

    results: Dict[str, List[Dict[str, Any]]] = {m: [] for m in modes}
    for repeat in range(1, args.repeats + 1):
      for mode in modes:
        out_dir = os.path.join(work_dir, f'out-{mode}-{repeat}')
        result = run_mode(mode, input_base, out_dir, args.workers)
        results[mode].append(result)
        print_row(result, args.workers, repeat)
    print(LEGEND.format(sampled='psutil, sampled every 50 ms, this run only'
                        if psutil else 'psutil missing: not sampled'))

    rates = {m: statistics.median(r['rate'] for r in results[m]) for m in modes}
    cpu = {m: statistics.median(r['cpu'] for r in results[m]) for m in modes}
    runs = (f'medians of {args.repeats} repeats' if args.repeats > 1
            else 'one run')
    print(f'\nratios ({runs}):')
    for mode in modes:
      if mode != PLAIN:
        print(_ratio_line(rates, cpu, mode, args.workers))
    missed = [m for m in modes if m in TARGETS
              and rates[m] / rates[PLAIN] < TARGETS[m]]

    splits = list(entries)
    reference = output_signature(results[PLAIN][0]['out_dir'], splits)
    mismatches = []
    for mode in modes:
      for repeat, result in enumerate(results[mode], start=1):
        signature = output_signature(result['out_dir'], splits)
        count_quarantine = sum(c['rejected'] for c in result['counts'].values())
        if (signature != reference or result['listed'] != num_listed
            or count_quarantine != len(signature['quarantine'])):
          found = ', '.join(
              f'{s} {signature[s][0]} records in the files, '
              f'{result["counts"][s]["examples"]} counted' for s in splits)
          mismatches.append(
              f'{_label(mode, args.workers)} run {repeat}: {found}; '
              f'quarantine {len(signature["quarantine"])} in the files, '
              f'{count_quarantine} counted')
    summary = ', '.join(
        f'{s} {reference[s][0]} records (digest {reference[s][1]})'
        for s in splits)
    print(f'\noutputs: {summary}; quarantine {len(reference["quarantine"])} '
          f'({len({r for _, r in reference["quarantine"]})} distinct reasons)')
    if mismatches:
      print('  MISMATCH against plain:\n' +
            '\n'.join(f'    {m}' for m in mismatches))
      return 1
    print(f'  identical in all {sum(len(r) for r in results.values())} runs')

    if args.probe_small:
      probe_fixed_cost(input_base, args.probe_small, modes, cpu, num_listed,
                       args.workers, work_dir)
    return 3 if args.strict and missed else 0
  finally:
    if args.keep:
      print(f'kept {work_dir}')
    else:
      shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == '__main__':
  sys.exit(main())
