"""The evaluation report: its numbers, its pictures, and the page in a real browser.

The end-to-end tests read the report of the shared `e2e` fixture (two runs into
one output dir; the second run's report is the one left) and load it in
headless Chromium (`make chromium`) over the DevTools protocol.
"""
import csv
import io
import json
import types

import bs4  # in the lock (TFX's notebook extras bring it)
import numpy as np
from PIL import Image
import pytest

from components import features
from components.trainer import module as trainer
from pipeline.tools import report
from pipeline.tools import report_eval
from tests import browser

SIZE = features.IMAGE_SIZE


# --- Units: no pipeline run ---------------------------------------------------------

def test_image_iou_averages_the_classes_present_in_truth_or_prediction():
  truth = np.array([[0, 0], [1, 1]])
  predicted = np.array([[0, 1], [1, 1]])
  # pet: 1 / 2; background: 2 / 3; border in neither mask: not counted.
  assert report_eval.image_iou(truth, predicted) == pytest.approx((1 / 2 + 2 / 3) / 2)
  assert report_eval.image_iou(truth, truth) == 1.0
  counts = report_eval.confusion(truth, predicted)
  assert counts.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_worst_and_best_are_kept_in_bounded_heaps_ties_in_split_order():
  extremes = report_eval._Extremes(2)  # pylint: disable=protected-access
  for index, iou in enumerate([0.5, 0.1, 0.9, 0.1, 0.9, 0.3]):
    if extremes.wants(iou, index):
      extremes.add(report_eval.Picture(
          report_eval.ImageScore(index, f'x_{index}', 'cat', 'x', iou, 1.0),
          None, None, None))
  assert [p.score.index for p in extremes.worst()] == [1, 3]
  assert [p.score.index for p in extremes.best()] == [2, 4]


def test_training_history_keeps_both_phases(tmp_path):
  history = trainer.TrainingHistory()
  history.add(types.SimpleNamespace(epoch=[0, 1], history={
      'loss': [0.9, 0.5], 'val_loss': [float('nan'), 0.6]}), trainer.MAIN_PHASE)
  # Phase 2 starts at `epochs` (here 3: phase 1 stopped early after 2).
  history.add(types.SimpleNamespace(epoch=[3], history={
      'loss': [0.4], 'val_loss': [0.55]}), trainer.FINE_TUNE_PHASE)
  history.save(str(tmp_path))
  saved = json.loads((tmp_path / trainer.HISTORY_JSON).read_text())
  assert [e['epoch'] for e in saved['epochs']] == [1, 2, 4]
  assert [e['phase'] for e in saved['epochs']] == ['main', 'main', 'fine_tune']
  assert saved['epochs'][0]['val_loss'] is None  # NaN is not JSON
  assert saved['fine_tune_epoch'] == 4
  assert history.eval_losses() == [0.6, 0.55]


def test_browser_reports_what_a_broken_page_does_wrong(tmp_path):
  """The browser checks below can fail: a broken page is caught on every count."""
  Image.new('RGB', (8, 8), (200, 0, 0)).save(tmp_path / 'ok.png')
  (tmp_path / 'index.html').write_text(
      '<!doctype html><title>t</title><img src="ok.png"><img src="missing.png">'
      '<script>console.error("boom"); undefinedFunction();</script>')
  with browser.Chromium() as chromium:
    chromium.load((tmp_path / 'index.html').as_uri())
    errors, failed = chromium.errors(), chromium.failed_requests()
    widths = chromium.evaluate('Array.from(document.images).map(i => i.naturalWidth)')
  assert any('boom' in e for e in errors)
  assert any('undefinedFunction' in e for e in errors)
  assert any('missing.png' in f for f in failed)
  assert widths == [8, 0]


# --- The e2e run's report ------------------------------------------------------------

@pytest.fixture(scope='module')
def page(e2e) -> dict:
  """The report's parsed HTML, and what headless Chromium saw loading it."""
  index = e2e['out'] / report.REPORT_DIR / report.INDEX
  with browser.Chromium() as chromium:
    chromium.load(index.as_uri())
    seen = {
        'errors': chromium.errors(), 'failed': chromium.failed_requests(),
        'urls': chromium.requested_urls(),
        'images': chromium.evaluate(
            'Array.from(document.images).map(i => ({src: i.getAttribute("src"), '
            'complete: i.complete, width: i.naturalWidth}))'),
        'screenshot': chromium.screenshot()}
  seen['dir'] = index.parent
  seen['soup'] = bs4.BeautifulSoup(index.read_text(), 'html.parser')
  return seen


def _rows(soup, table_id: str):
  table = soup.find('table', id=table_id)
  assert table is not None, f'no table {table_id}'
  return table.find_all('tr')[1:]  # without the header


def _eval_examples(summary) -> list:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(tf.io.gfile.glob(f"{summary['examples_uri']}/Split-eval/*"))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def test_report_loads_cleanly_in_chromium(page):
  assert page['errors'] == []
  assert page['failed'] == []
  # Everything is a file in the report's folder: no data: URIs, no network.
  assert page['urls'] and all(
      u.startswith(page['dir'].as_uri() + '/') for u in page['urls']), page['urls']
  # 8 worst, 8 best, IoU histogram, curves (and the run history: see below).
  assert len(page['images']) >= 2 * 8 + 2
  for image in page['images']:
    assert image['complete'] and image['width'] > 0, image
  screenshot = Image.open(io.BytesIO(page['screenshot'])).convert('RGB')
  assert screenshot.height > 2000  # the whole page, not the window
  assert len(screenshot.getcolors(maxcolors=1 << 24)) > 1000  # pictures, not blank


def test_report_metrics_checks_and_slices(e2e, page):
  second = e2e['second']
  soup = page['soup']
  assert second['run_id'] in soup.h1.text
  metrics = {r.td.text: r for r in _rows(soup, 'metrics-table')}
  assert set(metrics) == set(features.METRIC_NAMES)
  mean_iou = metrics['mean_iou'].find_all('td')
  assert mean_iou[1].text == f"{second['metrics']['mean_iou']:.4f}"
  assert mean_iou[2].text == f"{second['baseline_metrics']['mean_iou']:.4f}"
  # The unreachable bound: its check is shown, failed.
  assert 'fail' in mean_iou[4].text and '1.0000' in mean_iou[4].text
  species = {report_eval.describe(r)[1] for r in _eval_examples(second)}
  rows = _rows(soup, f'slice-{features.SPECIES_KEY}')
  assert {r['data-slice'] for r in rows} == species
  assert sum(int(r.find_all('td')[1].text) for r in rows) == second['examples']['eval']
  # Each slice check shows on its slice's row, with its outcome.
  checks_cell = {r['data-slice']: r.find_all('td')[-1].text for r in rows}
  for check in second['checks']:
    if (check['slice'] or '').startswith(f'{features.SPECIES_KEY}:'):
      name = check['slice'].split(':', 1)[1]
      outcome = ('not gated' if not check['gated'] else
                 'pass' if check['passed'] else 'fail')
      assert outcome in checks_cell[name]
      assert f"{check['threshold']:.4f}" in checks_cell[name]
  assert _rows(soup, f'slice-{features.BREED_KEY}')


def test_report_confusion_matrix_counts_every_eval_pixel(e2e, page):
  counts = np.array([[int(c.text) for c in r.find_all('td', class_='count')]
                     for r in _rows(page['soup'], 'confusion-counts')])
  assert counts.shape == (3, 3)
  assert counts.sum() == 16 * SIZE * SIZE == e2e['second']['examples']['eval'] * SIZE ** 2
  # The same pixels and labels as the Evaluator: its pixel accuracy.
  assert np.trace(counts) / counts.sum() == pytest.approx(
      e2e['second']['metrics']['pixel_accuracy'], abs=1e-5)
  for row in _rows(page['soup'], 'confusion-normalised'):
    fractions = [float(c.text) for c in row.find_all('td')[1:4]]
    assert sum(fractions) == pytest.approx(1, abs=2e-3)


def test_report_per_image_iou_worst_and_best(e2e, page):
  soup = page['soup']
  rows = _rows(soup, 'per-image-table')
  assert len(rows) == e2e['second']['examples']['eval'] == 16
  ious = {int(r['data-index']): float(r['data-iou']) for r in rows}
  with open(page['dir'] / report.PER_IMAGE_CSV) as f:
    assert len(list(csv.DictReader(f))) == 16
  worst = soup.find(id='worst').find_all('figure')
  best = soup.find(id='best').find_all('figure')
  assert len(worst) == len(best) == 8  # --report-images default
  worst_ious = [float(f['data-iou']) for f in worst]
  best_ious = [float(f['data-iou']) for f in best]
  assert worst_ious == sorted(worst_ious) and best_ious == sorted(best_ious, reverse=True)
  assert worst_ious[0] == min(ious.values()) <= max(ious.values()) == best_ious[0]
  assert worst_ious[0] <= best_ious[-1] and worst_ious[-1] <= best_ious[0]
  assert sorted(worst_ious + best_ious) == sorted(ious.values())  # 8 + 8 of 16
  for figure in worst + best:
    picture = page['dir'] / figure.img['src']
    assert Image.open(picture).size == (4 * SIZE * 2, SIZE * 2)
    assert f"IoU {float(figure['data-iou']):.4f}" in figure.figcaption.text
  # The worst image's IoU, recomputed here from the model and the raw example.
  index = int(worst[0]['data-index'])
  record = _eval_examples(e2e['second'])[index]
  assert report_eval.describe(record)[0] in worst[0].figcaption.text
  assert _independent_iou(e2e['second']['model']['uri'], record) == pytest.approx(
      ious[index], abs=1e-6)


def _independent_iou(model_uri: str, record: bytes) -> float:
  """Mean IoU over present classes, from serving_default and the decoded trimap."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(f'{model_uri}/Format-Serving')
  predicted = model.signatures['serving_default'](examples=tf.constant([record]))[
      'class_mask'].numpy()[0]
  example = tf.train.Example.FromString(record).features.feature
  trimap = tf.io.decode_png(example['mask'].bytes_list.value[0], channels=1)
  truth = (tf.image.resize(trimap, [SIZE, SIZE], method='nearest')[..., 0] - 1).numpy()
  ious = []
  for class_id in range(3):
    t, p = truth == class_id, predicted == class_id
    if (t | p).any():
      ious.append((t & p).sum() / (t | p).sum())
  return float(np.mean(ious))


def test_report_training_curves(e2e, page):
  model_uri = e2e['second']['model']['uri']
  with open(f'{model_uri}/{trainer.HISTORY_JSON}') as f:
    history = json.load(f)
  assert len(history['epochs']) == 8  # E2E_ARGS: --epochs 8, no fine-tuning
  assert [e['epoch'] for e in history['epochs']] == list(range(1, 9))
  assert history['fine_tune_epoch'] is None
  for epoch in history['epochs']:
    assert {'loss', 'accuracy', 'val_loss', 'val_accuracy'} <= set(epoch)
  assert len(_rows(page['soup'], 'epochs-table')) == 8
  curves = page['dir'] / report.CURVES_PNG
  assert page['soup'].find('img', src=report.CURVES_PNG) is not None
  assert Image.open(curves).size == (1000, 360)


def test_report_history_lists_the_runs_in_the_store(e2e, page):
  rows = _rows(page['soup'], 'history-table')
  first, second = e2e['first'], e2e['second']
  # Newest first: the second run (this report's), then the first.
  assert [r['data-run'] for r in rows] == [second['run_id'], first['run_id']]
  newest, oldest = ([c.text for c in r.find_all('td')] for r in rows)
  assert 'current' in rows[0]['class']
  assert newest[2] == f"{second['metrics']['mean_iou']:.4f}" and newest[3] == 'no'
  assert newest[4] == ''
  assert oldest[2] == f"{first['metrics']['mean_iou']:.4f}" and oldest[3] == 'yes'
  # The first run pushed: its version is the folder under serving_model/.
  assert oldest[4] and first['pushed_model'].rstrip('/').endswith(oldest[4])
  assert page['soup'].find('img', src=report.HISTORY_PNG) is not None
