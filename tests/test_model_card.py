"""Model cards: content against the run summary, HTML escaped and parseable.

A card built from a hand-made summary and lineage (slices, checks, a hostile
breed name), and the cards of the retraining history's two pushes
(tests/retraining_fixture.py), written as local_runner.py and the CLI do.
"""
import html
import html.parser
import json
import os
import pathlib

from components import features
from pipeline.tools import model_card
from tests import kit

HOSTILE = 'Pug <script>alert(1)</script> & "Co"'


class _Text(html.parser.HTMLParser):
  """The text of a page, and its tags, failing on a tag left open."""

  def __init__(self):
    super().__init__()
    self.text, self.tags, self.open = [], [], []

  def handle_starttag(self, tag, attrs):
    self.tags.append(tag)
    if tag not in ('meta', 'br'):
      self.open.append(tag)

  def handle_endtag(self, tag):
    assert self.open and self.open.pop() == tag, (tag, self.open)

  def handle_data(self, data):
    self.text.append(data)


def _parse(page: str) -> _Text:
  parser = _Text()
  parser.feed(page)
  parser.close()
  assert not parser.open, parser.open
  return parser


def _weakest_class(summary) -> str:
  """Computed here from the summary, independently of the card's code."""
  return min(('pet', 'background', 'border'),
             key=lambda name: summary['metrics'][f'iou_{name}'])


def _examples(span, train, evaluated, rejected):
  return {'uri': f'/o/tfx/PetExampleGen/examples/{span}', 'id': span, 'run_id': 'r1',
          'span': span, 'counts': {'train': train, 'eval': evaluated},
          'rejected': rejected}


def _made_up():
  """(summary, lineage info, model report) of a made-up run with slices."""
  metrics = {'mean_iou': 0.61234, 'iou_pet': 0.7, 'iou_background': 0.8,
             'iou_border': 0.33333, 'pixel_accuracy': 0.9}
  slice_values = lambda iou, n: dict(metrics, mean_iou=iou, num_examples=n)
  summary = {
      'run_id': 'r2', 'blessed': True, 'metrics': metrics,
      'baseline_metrics': dict(metrics, mean_iou=0.6), 'failed_checks': [],
      'pushed_model': '/o/serving_model/17',
      'examples': {'train': 120, 'eval': 30, 'rejected': 2, 'span': 5},
      'metrics_by_slice': {
          'species': {'cat': slice_values(0.55, 12), 'dog': slice_values(0.65, 18)},
          'breed': {HOSTILE: slice_values(0.4, 3), 'beagle': slice_values(0.7, 27)}},
      'checks': [
          {'metric': 'mean_iou', 'slice': None, 'kind': 'lower_bound',
           'threshold': 0.5, 'value': 0.61234, 'baseline': 0.6, 'passed': True,
           'gated': True},
          {'metric': 'mean_iou', 'slice': None, 'kind': 'max_regression',
           'threshold': 0.01, 'value': 0.61234, 'baseline': 0.6, 'passed': True,
           'gated': True},
          {'metric': 'mean_iou', 'slice': f'breed:{HOSTILE}', 'kind': 'lower_bound',
           'threshold': 0.5, 'value': 0.4, 'baseline': None, 'passed': True,
           'gated': False}]}
  info = {
      'pushed': {'version': '17', 'destination': '/o/serving_model/17',
                 'uri': '/o/tfx/Pusher/pushed_model/9', 'run_id': 'r2',
                 'time': '2026-01-02T03:04:05+00:00'},
      'model': {'uri': '/o/tfx/Trainer/model/7', 'id': 7, 'run_id': 'r2'},
      'blessing': {'uri': '/b', 'id': 8, 'run_id': 'r2', 'blessed': True},
      'examples': [_examples(4, 100, 25, 1), _examples(5, 120, 30, 2)],
      'evaluation': {'uri': '/e', 'metrics': metrics, 'baseline_metrics': None,
                     'examples': [_examples(5, 120, 30, 2)], 'thresholds': [],
                     'min_slice_size': 10},
      'baseline': {'uri': '/o/tfx/Trainer/model/3', 'id': 3, 'run_id': 'r1',
                   'pushed_versions': ['16']},
      'trainer': {'execution_id': 6, 'run_id': 'r2', 'state': 'COMPLETE',
                  'custom_config': {'training': {'epochs': 9}},
                  'code_fingerprint': '0123456789abcdef'},
      'encoder': {'weights': {'uri': '/w/enc.h5', 'id': 2, 'run_id': 'r2',
                              'sha256': 'ab' * 32},
                  'report': None},
      'hyperparameters': None, 'schema': None, 'transform_graph': None}
  report = {
      'encoder': {'source': '/w/enc.h5', 'sha256': 'ab' * 32, 'frozen': True,
                  'fine_tuned_blocks': 3},
      'totals': {'trainable_params': 1234567, 'frozen_params': 2345678,
                 'total_params': 3580245},
      'blocks': [{'name': 'encoder', 'trainable_params': 1000, 'frozen_params': 2345678},
                 {'name': 'final', 'trainable_params': 1233567, 'frozen_params': 0}],
      'training': {'epochs': 9, 'learning_rate': 0.001},
      'distribution': {'strategy': 'default', 'replicas': 1}}
  return summary, info, report


def test_made_up_card_content_and_escaping():
  summary, info, report = _made_up()
  markdown, page = model_card.render(model_card.card_context(summary, info, report))
  for text in (markdown, page):
    assert 'Oxford-IIIT Pet' in text and 'Not for other domains' in text
    assert 'Trained on 220 examples (2 span(s)), evaluated on 30 examples' in text
    assert '0.6123' in text and '0.6000' in text and '+0.0123' in text
    assert '1,234,567 trainable, 2,345,678 frozen' in text
    assert 'weights file /w/enc.h5' in text and 'ab' * 32 in text
    assert 'top 3 blocks fine-tuned' in text
    assert '/o/tfx/Trainer/model/3' in text and 'version 16' in text
    assert 'border' in text and '0.3333' in text  # the weakest class
    assert 'not gated (too few examples)' in text
  assert '- Weakest class: **border** (IoU 0.3333).' in markdown
  assert '- Weakest species: **cat** (mean IoU 0.5500 on 12 examples).' in markdown
  escaped = html.escape(HOSTILE, quote=False)
  assert f'- Too few eval examples to be gated: breed:{escaped}' in markdown
  assert f'| {escaped} | 3 | 0.4000 |' in markdown
  # Neither card passes markup from the data on to a renderer.
  for text in (markdown, page):
    assert '<script>' not in text and '&lt;script&gt;' in text
  parsed = _parse(page)
  assert 'script' not in parsed.tags
  assert not [t for t in parsed.tags if t in ('link', 'img', 'iframe')]  # self-contained
  assert HOSTILE in ''.join(parsed.text)


def _version(summary) -> str:
  return os.path.basename(summary['pushed_model'])


def test_second_push_card_matches_its_summary(retraining):
  out, first, second = retraining['out'], retraining['first'], retraining['second']
  paths = model_card.write_model_card(second, kit.sqlite_store(out))
  folder = pathlib.Path(second['pushed_model']) / 'assets.extra'
  assert paths == (str(folder / 'model_card.md'), str(folder / 'model_card.html'))
  markdown = (folder / 'model_card.md').read_text()
  page = (folder / 'model_card.html').read_text()
  examples, model = second['examples'], second['model']
  for text in (markdown, page):
    assert f"version {_version(second)}" in text and second['run_id'] in text
    assert (f"Trained on {examples['train']} examples (1 span(s)), evaluated on "
            f"{examples['eval']} examples; {examples['rejected']} input(s) rejected") in text
    for name in features.METRIC_NAMES:
      assert f"{second['metrics'][name]:.4f}" in text, name
      assert f"{second['baseline_metrics'][name]:.4f}" in text, name
    assert 'random initialisation' in text  # --encoder-weights none
    assert 'the whole encoder trained' in text  # --train-encoder
    assert (f"{model['trainable_params']:,} trainable, "
            f"{model['frozen_params']:,} frozen") in text
    assert first['model']['uri'] in text and first['run_id'] in text  # the baseline
  assert f'Weakest class: **{_weakest_class(second)}**' in markdown
  _parse(page)


def test_cli_writes_the_first_push_card(retraining, capsys):
  out, first = retraining['out'], retraining['first']
  # The run wrote this card already: the CLI must write it again by itself.
  folder = pathlib.Path(first['pushed_model']) / 'assets.extra'
  for name in ('model_card.md', 'model_card.html'):
    (folder / name).unlink()
  code = model_card.main([str(out), '--version', _version(first)])
  stdout, err = capsys.readouterr()
  assert code == 0, err
  folder = pathlib.Path(first['pushed_model']) / 'assets.extra'
  assert stdout.split() == [str(folder / 'model_card.md'), str(folder / 'model_card.html')]
  markdown = (folder / 'model_card.md').read_text()
  assert 'No baseline' in markdown and first['run_id'] in markdown
  assert f"{first['metrics']['mean_iou']:.4f}" in markdown
  assert f'Weakest class: **{_weakest_class(first)}**' in markdown
  # Not the newest run: its summary was rebuilt from ML Metadata.
  assert json.loads((out / 'run_summary.json').read_text())['run_id'] != first['run_id']
