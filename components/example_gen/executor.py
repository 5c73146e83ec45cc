"""The PetExampleGen executor: a Beam PTransform from an Oxford-IIIT Pet list file to tf.Examples.

Each input split's pattern names a list file (e.g. `annotations/trainval.txt`, or
`span-{SPAN}/annotations/trainval.txt`, which TFX's driver resolves to a span).
Its folder's parent is the data root holding `images/` and `annotations/trimaps/`.
Pairs that cannot become valid examples are written, with the reason, to
`<examples artifact>/quarantine/<list name>.jsonl`; counts per list go to
`<list name>.counts.json` so that listed = written + quarantined is checkable.
"""
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Union

import apache_beam as beam
from absl import logging
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components import features
from components.example_gen import validation

QUARANTINE_DIR = 'quarantine'
REJECTED_TAG = 'rejected'
# Custom properties set on the output Examples artifact.
NUM_REJECTED_PROPERTY = 'num_rejected'
QUARANTINE_URI_PROPERTY = 'quarantine_uri'
SPLIT_COUNTS_PROPERTY = 'split_counts'  # JSON: split -> {examples, rejected}
DEFAULT_MIN_VALID_FRACTION = 0.5


def custom_config_proto(options: Dict[str, Any]) -> example_gen_pb2.CustomConfig:
  """Packs plain executor options (e.g. min_valid_fraction) into a CustomConfig."""
  struct = struct_pb2.Struct()
  struct.update(options)
  config = example_gen_pb2.CustomConfig()
  config.custom_config.Pack(struct)
  return config


def _options(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
  if not raw:
    return {}
  config = example_gen_pb2.CustomConfig()
  json_format.Parse(raw, config)
  struct = struct_pb2.Struct()
  config.custom_config.Unpack(struct)
  return json_format.MessageToDict(struct)


def list_name(split_pattern: str) -> str:
  """'span-2/annotations/trainval.txt' -> 'trainval': the quarantine file stem."""
  return os.path.splitext(os.path.basename(split_pattern))[0]


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _read(path: str) -> bytes:
  """Reads a file through tf.io.gfile (local disk, GCS, HDFS alike)."""
  if not tf.io.gfile.exists(path):
    raise validation.BadInput(f'missing file {path}')
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


def parse_list_line(line: str) -> Optional[List[str]]:
  """Returns the columns of a list-file entry, or None for comments and blanks."""
  line = line.strip()
  if not line or line.startswith('#'):
    return None
  return line.split()


def make_example(data_root: str, columns: List[str]) -> tf.train.Example:
  """Builds one tf.Example from a list-file entry `NAME CLASS-ID SPECIES BREED-ID`.

  Raises:
    BadInput: with the reason, for any entry that cannot become a valid example.
  """
  if len(columns) != 4 or not all(c.isascii() and c.isdigit() for c in columns[1:]):
    raise validation.BadInput(
        f'malformed list entry {" ".join(columns)!r}: expected '
        '"NAME CLASS-ID SPECIES BREED-ID"')
  name = columns[0]
  class_id, species, breed_id = (int(c) for c in columns[1:])
  image, height, width, _ = validation.normalise_image(
      _read(os.path.join(data_root, 'images', name + '.jpg')))
  mask = validation.validate_trimap(
      _read(os.path.join(data_root, 'annotations', 'trimaps', name + '.png')),
      height, width)
  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_KEY: _bytes_feature(image),
      features.MASK_KEY: _bytes_feature(mask),
      features.FILE_NAME_KEY: _bytes_feature(name.encode()),
      features.CLASS_ID_KEY: _int_feature(class_id),
      features.SPECIES_KEY: _int_feature(species),
      features.BREED_ID_KEY: _int_feature(breed_id),
      features.HEIGHT_KEY: _int_feature(height),
      features.WIDTH_KEY: _int_feature(width),
  }))


class _ToExampleFn(beam.DoFn):
  """List-file line -> tf.Example, or a quarantine record on the 'rejected' tag."""

  def __init__(self, data_root: str, list_file: str):
    self._data_root = data_root
    self._list_file = list_file

  def process(self, line: str) -> Iterator[Union[tf.train.Example, Any]]:
    columns = parse_list_line(line)
    if columns is None:
      return
    try:
      yield make_example(self._data_root, columns)
    except validation.BadInput as e:
      beam.metrics.Metrics.counter('pet_example_gen', 'rejected').inc()
      yield beam.pvalue.TaggedOutput(REJECTED_TAG, json.dumps({
          'list_file': self._list_file, 'entry': ' '.join(columns),
          'file_name': columns[0], 'reason': str(e)}))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ListFileToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  """Reads one list file and emits tf.Examples; rejects go to the quarantine."""
  list_file = os.path.join(
      exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  if not tf.io.gfile.exists(list_file):
    raise ValueError(f'list file {list_file} does not exist')
  data_root = os.path.dirname(os.path.dirname(list_file))
  out_stem = os.path.join(exec_properties['_quarantine_dir'],
                          list_name(split_pattern))
  results = (
      pipeline
      | 'ReadList' >> beam.io.ReadFromText(list_file)
      # A list file is one bundle; reshuffle so decoding spreads over workers.
      | 'Spread' >> beam.Reshuffle()
      | 'ToExample' >> beam.ParDo(_ToExampleFn(data_root, list_file))
      .with_outputs(REJECTED_TAG, main='examples'))
  rejected = results[REJECTED_TAG]
  _ = rejected | 'WriteQuarantine' >> beam.io.WriteToText(
      out_stem, file_name_suffix='.jsonl', shard_name_template='')
  num_rejected = rejected | 'CountRejected' >> beam.combiners.Count.Globally()
  _ = (results.examples
       | 'CountExamples' >> beam.combiners.Count.Globally()
       | 'ToCounts' >> beam.Map(
           lambda n, bad: json.dumps({'list_file': list_file, 'examples': n,
                                      'rejected': bad}),
           bad=beam.pvalue.AsSingleton(num_rejected))
       | 'WriteCounts' >> beam.io.WriteToText(
           out_stem, file_name_suffix='.counts.json', shard_name_template=''))
  return results.examples


def read_counts(quarantine_dir: str) -> Dict[str, Dict[str, int]]:
  """Per list file stem: {'examples': n, 'rejected': n} as the executor wrote them."""
  counts = {}
  for path in tf.io.gfile.glob(os.path.join(quarantine_dir, '*.counts.json')):
    with tf.io.gfile.GFile(path) as f:
      counts[os.path.basename(path)[:-len('.counts.json')]] = json.load(f)
  return counts


def read_quarantine(quarantine_dir: str) -> List[Dict[str, str]]:
  """All quarantine records (list_file, entry, file_name, reason)."""
  records = []
  for path in sorted(tf.io.gfile.glob(os.path.join(quarantine_dir, '*.jsonl'))):
    with tf.io.gfile.GFile(path) as f:
      records.extend(json.loads(line) for line in f if line.strip())
  return records


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """FileBasedExampleGen executor for the Oxford-IIIT Pet layout."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ListFileToExample

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    quarantine_dir = os.path.join(examples.uri, QUARANTINE_DIR)
    exec_properties = dict(exec_properties, _quarantine_dir=quarantine_dir)
    super().Do(input_dict, output_dict, exec_properties)

    input_config = example_gen_pb2.Input()
    json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                      input_config)
    by_list = read_counts(quarantine_dir)
    counts = {s.name: by_list[list_name(s.pattern)] for s in input_config.splits}
    written = sum(c['examples'] for c in counts.values())
    rejected = sum(c['rejected'] for c in counts.values())
    listed = written + rejected
    examples.set_int_custom_property(NUM_REJECTED_PROPERTY, rejected)
    examples.set_string_custom_property(SPLIT_COUNTS_PROPERTY, json.dumps(
        {k: {'examples': v['examples'], 'rejected': v['rejected']}
         for k, v in counts.items()}))
    examples.set_string_custom_property(QUARANTINE_URI_PROPERTY, quarantine_dir)
    logging.info('PetExampleGen: %s (quarantine: %s)', counts, quarantine_dir)
    min_fraction = float(_options(exec_properties).get(
        'min_valid_fraction', DEFAULT_MIN_VALID_FRACTION))
    if listed == 0:
      raise ValueError(f'no valid examples: the list files hold no entries '
                       f'({", ".join(s.pattern for s in input_config.splits)})')
    if written == 0:
      raise ValueError(f'no valid examples: all {listed} listed pairs were '
                       f'rejected (reasons in {quarantine_dir})')
    if written < min_fraction * listed:
      raise ValueError(
          f'only {written} of {listed} listed pairs are valid, below the minimum '
          f'valid fraction {min_fraction} (reasons in {quarantine_dir})')
