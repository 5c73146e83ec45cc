"""Segmentation quality per encoder setting, with the pipeline's own code.

Runs the whole pipeline (`local_runner.run`: ExampleGen, Transform, the
Trainer's run_fn, TFMA's Evaluator) once per setting on each data set, and
prints mean IoU, per-class IoU, pixel accuracy and wall time side by side:

  random      MobileNetV2 encoder from random weights, trained with the decoder
  frozen      pretrained encoder (--encoder-weights), frozen; decoder trains
  fine-tuned  frozen as above, then the top K encoder blocks fine-tune

Data sets: the real Oxford-IIIT sample beside the checkout (24 trainval / 25
test photos: small, so its numbers are noisy) and synthetic pets. Runs of one
data set share an output dir, so ingestion and Transform run once.

  python benchmarks/quality_benchmark.py [--weights FILE] [--epochs 10] ...
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
import local_runner
from pipeline import cli
from pipeline.tools import synthetic_pets

REAL_SAMPLE = REPO.parent / 'shared' / 'data' / 'oxford_pets_sample'
DEFAULT_WEIGHTS = REPO / '.cache' / 'encoders' / (
    'mobilenet_v2_stanford_dogs_128_no_top.weights.h5')
METRICS = ('mean_iou', 'iou_pet', 'iou_background', 'iou_border',
           'pixel_accuracy')


def settings(weights: str, fine_tune_blocks: int, fine_tune_epochs: int):
  """Setting name -> the encoder flags it adds."""
  return {
      'random': ['--encoder-weights', 'none', '--train-encoder'],
      'frozen': ['--encoder-weights', weights, '--freeze-encoder'],
      f'fine-tuned (top {fine_tune_blocks})': [
          '--encoder-weights', weights, '--freeze-encoder',
          '--fine-tune-blocks', str(fine_tune_blocks),
          '--fine-tune-epochs', str(fine_tune_epochs)],
  }


def run_one(data_root: str, out: str, common, flags) -> dict:
  config, _ = local_runner.parse_config(
      ['--data-root', data_root, '--output-dir', out, '--report-images', '0']
      + common + flags)
  problem = cli.settings.validate(config)
  if problem:
    raise SystemExit(f'error: {problem}')
  start = time.perf_counter()
  summary = local_runner.run(config)
  return {'seconds': time.perf_counter() - start, **summary['metrics'],
          'trainer_seconds': summary['components']['Trainer']['seconds']}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--weights', default=str(DEFAULT_WEIGHTS),
                 help='pretrained no-top weights (make encoder-weights)')
  p.add_argument('--epochs', type=int, default=10)
  p.add_argument('--batch-size', type=int, default=8)
  p.add_argument('--fine-tune-blocks', type=int, default=3)
  p.add_argument('--fine-tune-epochs', type=int, default=5)
  p.add_argument('--synthetic', type=int, nargs=2, default=(160, 48),
                 metavar=('TRAIN', 'TEST'), help='synthetic pets (0 0 = none)')
  p.add_argument('--no-real', action='store_true', help='skip the real sample')
  p.add_argument('--only', action='append', default=[],
                 help='run only these settings (repeatable)')
  p.add_argument('--work-dir', default=None)
  p.add_argument('--json', action='store_true', help='print rows as JSON too')
  args = p.parse_args(argv)
  if not os.path.isfile(args.weights):
    print(f'error: no weights file {args.weights} (run make encoder-weights)',
          file=sys.stderr)
    return 2
  work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix='quality_'))
  data = {}
  if not args.no_real:
    data['real sample'] = str(REAL_SAMPLE)
  if args.synthetic[0]:
    root = work / 'synthetic'
    if not (root / 'annotations' / 'test.txt').exists():
      synthetic_pets.generate(root, num_trainval=args.synthetic[0],
                              num_test=args.synthetic[1], seed=0)
    data[f'synthetic {args.synthetic[0]}/{args.synthetic[1]}'] = str(root)
  common = ['--epochs', str(args.epochs), '--batch-size', str(args.batch_size)]
  rows = []
  for data_name, root in data.items():
    out = str(work / ('out_' + data_name.split()[0]))
    for name, flags in settings(args.weights, args.fine_tune_blocks,
                                args.fine_tune_epochs).items():
      if args.only and name.split()[0] not in args.only:
        continue
      print(f'== {data_name}: {name}', flush=True)
      rows.append({'data': data_name, 'setting': name,
                   **run_one(root, out, common, flags)})
  header = (f"{'data':<20}{'setting':<20}" + ''.join(f'{m:>15}' for m in METRICS)
            + f"{'trainer s':>11}{'run s':>8}")
  print('\n' + header)
  for row in rows:
    print(f"{row['data']:<20}{row['setting']:<20}" +
          ''.join(f'{row.get(m, float("nan")):>15.3f}' for m in METRICS) +
          f"{row['trainer_seconds']:>11.0f}{row['seconds']:>8.0f}")
  if args.json:
    print(json.dumps(rows))
  return 0


if __name__ == '__main__':
  sys.exit(main())
