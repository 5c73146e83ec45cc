"""Serves a SavedModel in a fresh process, as a model server would, and judges it.

  python probe.py REQUEST_JSON

Standalone on purpose: it imports only TensorFlow, numpy and the standard
library, never this project's code, so a model that works only next to the
code that exported it fails here as it would in a model server. For the same
reason Keras is made unimportable: TF Serving runs the graph without Python
Keras objects (and TensorFlow then imports in about half the time, measured).

REQUEST_JSON holds:
  model_dir            the SavedModel directory.
  example_files        GZIP TFRecord files of serialized raw tf.Examples.
  num_examples         how many examples to send; one request = one example.
  required_signatures  signatures the model must have.
  feeds                input name -> 'serialized' (the serialized tf.Example)
                       or 'feature:NAME' (the bytes of that tf.Example feature).
  expectations         signature -> output -> {dtype, shape, range}: shape is a
                       list of int (exact), null (any) or a feature name (that
                       int64 feature of the example); range is [low, high].
  latency_budget_ms    the most a request may take (median per signature).

Every signature the model has is run on every example (after one untimed
warm-up request) and checked. One JSON line goes to stdout:
  {"ok": bool, "reason": one line, "" when ok, "num_examples": int,
   "signatures": {name: {"p50_ms", "max_ms"}}, "checks": [...],
   "import_seconds", "load_seconds"}
Exit status 0 whenever a verdict was printed, pass or fail.
"""
import json
import os
import sys
import time

if __name__ == '__main__':  # never in a process that merely imports this file
  # Before TensorFlow's import: see the module docstring. A None entry in
  # sys.modules makes `import keras` raise ImportError, which TensorFlow's
  # optional eager Keras import catches.
  sys.modules['keras'] = None
  sys.modules['tf_keras'] = None
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

_started = time.perf_counter()
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

IMPORT_SECONDS = time.perf_counter() - _started


class Failure(Exception):
  """The model is not servable; str() is the one-line reason."""


def first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def read_examples(files, count):
  """Up to `count` serialized tf.Examples from GZIP TFRecord files, in order."""
  data = tf.data.TFRecordDataset(sorted(files), compression_type='GZIP')
  return [record.numpy() for record in data.take(count)]


def feed_value(source, serialized, example):
  """The tensor one input gets for one example (batch of one)."""
  if source == 'serialized':
    return tf.constant([serialized])
  name = source[len('feature:'):]
  feature = example.features.feature.get(name)
  if feature is None or not feature.bytes_list.value:
    raise Failure(f'an eval example has no bytes feature {name!r}')
  return tf.constant([feature.bytes_list.value[0]])


def expected_dim(dim, example):
  """An expected size: an int, None (any) or an int64 feature's value."""
  if isinstance(dim, str):
    feature = example.features.feature.get(dim)
    if feature is None or not feature.int64_list.value:
      raise Failure(f'an eval example has no int64 feature {dim!r}')
    return feature.int64_list.value[0]
  return dim


def check_outputs(name, outputs, expectations, example):
  """Raises Failure when an output lacks, or has the wrong dtype/shape/values."""
  for key, want in expectations.items():
    where = f'signature {name}: output {key!r}'
    if key not in outputs:
      raise Failure(f'{where} missing')
    value = outputs[key]
    if 'dtype' in want and value.dtype.name != want['dtype']:
      raise Failure(f'{where} is {value.dtype.name}, expected {want["dtype"]}')
    if 'shape' in want:
      shape = [expected_dim(d, example) for d in want['shape']]
      if len(shape) != value.ndim or any(
          d is not None and d != got for d, got in zip(shape, value.shape)):
        shown = [d if d is not None else '*' for d in shape]
        raise Failure(f'{where} has shape {list(value.shape)}, expected {shown}')
    if 'range' in want and value.size:
      low, high = want['range']
      if value.dtype.kind == 'f' and not np.isfinite(value).all():
        raise Failure(f'{where} has NaN or infinite values')
      if value.min() < low or value.max() > high:
        raise Failure(f'{where} has values outside {low}..{high} (found '
                      f'{value.min()}..{value.max()})')


def probe_signature(name, function, records, request):
  """Runs one signature on every example; returns its latency stats (ms)."""
  _, inputs = function.structured_input_signature
  feeds = request['feeds']
  unknown = sorted(set(inputs) - set(feeds))
  if unknown:
    raise Failure(f'signature {name}: no feed for input(s) {unknown} '
                  f'(known: {sorted(feeds)})')
  expectations = request['expectations'].get(name, {})
  latencies = []
  for index, serialized in enumerate([records[0]] + records):  # warm-up first
    example = tf.train.Example.FromString(serialized)
    kwargs = {key: feed_value(feeds[key], serialized, example) for key in inputs}
    started = time.perf_counter()
    try:
      # A request is done when its results are on the host, as numpy arrays.
      outputs = {key: value.numpy() for key, value in function(**kwargs).items()}
    except (tf.errors.OpError, ValueError, TypeError) as e:
      raise Failure(f'signature {name} failed on an eval example: '
                    f'{first_line(e)}') from None
    if index:  # the warm-up request traces and allocates: not timed
      latencies.append((time.perf_counter() - started) * 1000)
    check_outputs(name, outputs, expectations, example)
  return {'p50_ms': round(float(np.median(latencies)), 2),
          'max_ms': round(float(np.max(latencies)), 2)}


def probe(request, result):
  """Fills `result` with measurements; raises Failure on the first problem."""
  records = read_examples(request['example_files'], request['num_examples'])
  if not records:
    raise Failure('no eval examples to probe with')
  result['num_examples'] = len(records)
  started = time.perf_counter()
  try:
    model = tf.saved_model.load(request['model_dir'])
  except Exception as e:  # pylint: disable=broad-except
    # Corrupt files raise many types (OpError, ValueError, DecodeError, ...).
    raise Failure(f'loading the SavedModel failed: {first_line(e)}') from None
  result['load_seconds'] = round(time.perf_counter() - started, 2)
  result['checks'].append('loads')
  missing = [s for s in request['required_signatures'] if s not in model.signatures]
  if missing:
    raise Failure(f'signature{"s" if len(missing) > 1 else ""} '
                  f'{", ".join(missing)} missing')
  result['checks'].append('required signatures present')
  for name in sorted(model.signatures):
    result['signatures'][name] = probe_signature(
        name, model.signatures[name], records, request)
  result['checks'].append('every signature serves every example with the '
                          'expected outputs')
  budget = request['latency_budget_ms']
  for name, stats in sorted(result['signatures'].items()):
    if stats['p50_ms'] > budget:
      raise Failure(f'latency p50 {stats["p50_ms"]:.1f} ms per request over the '
                    f'{budget:g} ms budget (signature {name})')
  result['checks'].append(f'latency p50 within {budget:g} ms per request')


def main(argv):
  request = json.loads(argv[1])
  result = {'ok': False, 'reason': '', 'num_examples': 0, 'signatures': {},
            'checks': [], 'import_seconds': round(IMPORT_SECONDS, 2)}
  try:
    probe(request, result)
    result['ok'] = True
  except Failure as e:
    result['reason'] = str(e)
  print(json.dumps(result), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
