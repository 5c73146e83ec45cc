"""The PetExampleGen executor: a Beam PTransform from an Oxford-IIIT Pet list file to tf.Examples.

Each input split's pattern names a list file (e.g. `annotations/trainval.txt`, or
`span-{SPAN}/annotations/trainval.txt`, which TFX's driver resolves to a span).
Its folder's parent is the data root holding `images/` and `annotations/trimaps/`.
Pairs that cannot become valid examples are written, with the reason, to
`<examples artifact>/quarantine/<list name>.jsonl`; counts per list go to
`<list name>.counts.json` so that listed = written + quarantined is checkable.

The executor fails (before anything downstream runs) when a split has no valid
example or too few pairs are valid overall. TFX deletes a failed component's
outputs, so with `failed_quarantine_dir` in the custom config the quarantine is
first copied to `<failed_quarantine_dir>/<examples artifact basename>/`, and the
error names that copy.
"""
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from absl import logging
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor, write_split
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.example_gen import records
from components.example_gen.options import ExampleGenOptions

QUARANTINE_DIR = 'quarantine'
# Custom properties set on the output Examples artifact.
NUM_REJECTED_PROPERTY = 'num_rejected'
QUARANTINE_URI_PROPERTY = 'quarantine_uri'
SPLIT_COUNTS_PROPERTY = 'split_counts'  # JSON: split -> {examples, rejected}
# Custom-config key (besides ExampleGenOptions' fields): where a failed run's
# quarantine is kept.
FAILED_QUARANTINE_DIR_KEY = 'failed_quarantine_dir'


def custom_config_proto(options: Dict[str, Any]) -> example_gen_pb2.CustomConfig:
  """Packs plain executor options (e.g. min_valid_fraction) into a CustomConfig."""
  struct = struct_pb2.Struct()
  struct.update(options)
  config = example_gen_pb2.CustomConfig()
  config.custom_config.Pack(struct)
  return config


def _custom_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
  if not raw:
    return {}
  config = example_gen_pb2.CustomConfig()
  json_format.Parse(raw, config)
  struct = struct_pb2.Struct()
  config.custom_config.Unpack(struct)
  return json_format.MessageToDict(struct)


def executor_options(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  """ExampleGenOptions' defaults overlaid with the custom config's values."""
  options = ExampleGenOptions().to_executor_options()
  options[FAILED_QUARANTINE_DIR_KEY] = None
  options.update(_custom_config(exec_properties))
  # A protobuf Struct holds every number as a double.
  options['max_image_pixels'] = int(options['max_image_pixels'])
  options['min_valid_fraction'] = float(options['min_valid_fraction'])
  return options


def _output_formats(exec_properties: Dict[str, Any]) -> Tuple[int, int]:
  """(payload format, file format): only tf.Examples in GZIP TFRecords are made."""
  payload_format = exec_properties.get(
      standard_component_specs.OUTPUT_DATA_FORMAT_KEY) or (
          example_gen_pb2.FORMAT_TF_EXAMPLE)
  file_format = exec_properties.get(
      standard_component_specs.OUTPUT_FILE_FORMAT_KEY) or (
          example_gen_pb2.FORMAT_TFRECORDS_GZIP)
  if (payload_format != example_gen_pb2.FORMAT_TF_EXAMPLE or
      file_format != example_gen_pb2.FORMAT_TFRECORDS_GZIP):
    raise ValueError(
        'PetExampleGen writes tf.Examples in GZIP TFRecords only; got payload '
        f'format {example_gen_pb2.PayloadFormat.Name(payload_format)} and file '
        f'format {example_gen_pb2.FileFormat.Name(file_format)}')
  return payload_format, file_format


def list_name(split_pattern: str) -> str:
  """'span-2/annotations/trainval.txt' -> 'trainval': the quarantine file stem."""
  return os.path.splitext(os.path.basename(split_pattern))[0]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ListFileToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  """Reads one list file and emits serialised tf.Examples; rejects go to the quarantine.

  The workers run Beam's own transforms and `records.ToRecordFn`, so they never
  import TensorFlow or TFX (see components/example_gen/records.py).
  """
  list_file = os.path.join(
      exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  if not tf.io.gfile.exists(list_file):
    raise ValueError(f'list file {list_file} does not exist')
  out_stem = os.path.join(exec_properties['_quarantine_dir'],
                          list_name(split_pattern))
  to_record = records.ToRecordFn(
      records.layout_root(list_file), list_file,
      executor_options(exec_properties)['max_image_pixels'])
  results = (
      pipeline
      # Bytes: the DoFn decodes them, so a list that is not UTF-8 cannot fail here.
      | 'ReadList' >> beam.io.ReadFromText(list_file, coder=beam.coders.BytesCoder())
      # A list file is one bundle; reshuffle so decoding spreads over workers.
      | 'Spread' >> beam.Reshuffle()
      | 'ToExample' >> beam.ParDo(to_record)
      .with_outputs(records.REJECTED_TAG, main='examples'))
  rejected = results[records.REJECTED_TAG]
  _ = rejected | 'WriteQuarantine' >> beam.io.WriteToText(
      out_stem, file_name_suffix='.jsonl', shard_name_template='')
  num_rejected = rejected | 'CountRejected' >> beam.combiners.Count.Globally()
  _ = (results.examples
       | 'CountExamples' >> beam.combiners.Count.Globally()
       | 'ToCounts' >> beam.Map(
           records.counts_record,
           num_rejected=beam.pvalue.AsSingleton(num_rejected),
           list_file=list_file)
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
  entries = []
  for path in sorted(tf.io.gfile.glob(os.path.join(quarantine_dir, '*.jsonl'))):
    with tf.io.gfile.GFile(path) as f:
      entries.extend(json.loads(line) for line in f if line.strip())
  return entries


def _record_counts(examples, counts: Dict[str, Dict[str, int]],
                   quarantine_dir: str) -> None:
  """Sets the count properties on `examples` (split -> {examples, rejected})."""
  rejected = sum(c['rejected'] for c in counts.values())
  examples.set_int_custom_property(NUM_REJECTED_PROPERTY, rejected)
  examples.set_string_custom_property(SPLIT_COUNTS_PROPERTY, json.dumps(
      {k: {'examples': v['examples'], 'rejected': v['rejected']}
       for k, v in counts.items()}))
  examples.set_string_custom_property(QUARANTINE_URI_PROPERTY, quarantine_dir)
  logging.info('PetExampleGen: %s (quarantine: %s)', counts, quarantine_dir)


def _split_problem(split: example_gen_pb2.Input.Split, count: Dict[str, int],
                   where: str) -> Optional[str]:
  """Why a split fails on its own (no valid example), or None."""
  if count['examples']:
    return None
  prefix = f"split '{split.name}' ({split.pattern}) has no valid examples"
  if not count['rejected']:
    return f'{prefix}: the list file holds no entries'
  reasons = os.path.join(where, list_name(split.pattern) + '.jsonl')
  # No example written: every listed pair was rejected.
  return (f"{prefix}: {count['rejected']} listed, {count['rejected']} rejected "
          f'(reasons in {reasons})')


def count_failure(splits: Sequence[example_gen_pb2.Input.Split],
                  counts: Dict[str, Dict[str, int]],
                  min_valid_fraction: float) -> Optional[Callable[[str], str]]:
  """Why the counts fail the run, as a function of where the reasons are kept.

  The folder is only known once the caller has (maybe) copied the quarantine,
  hence a function. The message is one line: every split with no valid
  example, else the overall fraction below `min_valid_fraction`.

  Returns:
    None when the counts pass, else folder -> error message.
  """
  written = sum(counts[s.name]['examples'] for s in splits)
  listed = written + sum(counts[s.name]['rejected'] for s in splits)
  if all(counts[s.name]['examples'] for s in splits) and (
      written >= min_valid_fraction * listed):
    return None

  def message(where: str) -> str:
    problems = [p for p in (_split_problem(s, counts[s.name], where)
                            for s in splits) if p]
    if problems:
      return '; '.join(problems)
    return (f'only {written} of {listed} listed pairs are valid, below the '
            f'minimum valid fraction {min_valid_fraction} (reasons in {where})')
  return message


def keep_quarantine(quarantine_dir: str, failed_quarantine_dir: str,
                    examples_uri: str) -> str:
  """Copies the quarantine files where they outlive the failed execution.

  Returns:
    `<failed_quarantine_dir>/<basename of examples_uri>`, the copy's folder.
  """
  kept = os.path.join(failed_quarantine_dir,
                      os.path.basename(examples_uri.rstrip('/')))
  tf.io.gfile.makedirs(kept)
  for pattern in ('*.jsonl', '*.counts.json'):
    for path in tf.io.gfile.glob(os.path.join(quarantine_dir, pattern)):
      tf.io.gfile.copy(path, os.path.join(kept, os.path.basename(path)),
                       overwrite=True)
  return kept


def _record_and_check_counts(examples, input_config: example_gen_pb2.Input,
                             quarantine_dir: str,
                             exec_properties: Dict[str, Any]) -> None:
  """Sets the count properties on `examples`; raises when too little is valid."""
  by_list = read_counts(quarantine_dir)
  counts = {s.name: by_list[list_name(s.pattern)] for s in input_config.splits}
  _record_counts(examples, counts, quarantine_dir)
  options = executor_options(exec_properties)
  failure = count_failure(input_config.splits, counts,
                          options['min_valid_fraction'])
  if failure is None:
    return
  where = quarantine_dir
  if options[FAILED_QUARANTINE_DIR_KEY]:
    # TFX deletes a failed execution's outputs: the error must point elsewhere.
    where = keep_quarantine(quarantine_dir, options[FAILED_QUARANTINE_DIR_KEY],
                            examples.uri)
  raise ValueError(failure(where))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """FileBasedExampleGen executor for the Oxford-IIIT Pet layout."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ListFileToExample

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    """Writes the splits and the quarantine, records the counts, checks them.

    TFX's base `Do` is followed except for the write: its `WriteSplit` runs
    TFX code in the workers and reshuffles every serialised example, so all
    image bytes cross the runner's shuffle. Here the line-level reshuffle in
    `_ListFileToExample` already spreads the work over the workers, and each
    worker writes the records it makes (TFX's file names and GZIP format).

    Raises:
      ValueError: a split with no valid example, too small a valid fraction,
        or an output format other than tf.Examples in GZIP TFRecords.
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    input_config = example_gen_pb2.Input()
    json_format.Parse(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                      input_config)
    output_config = example_gen_pb2.Output()
    json_format.Parse(
        exec_properties.get(standard_component_specs.OUTPUT_CONFIG_KEY) or '{}',
        output_config)
    payload_format, file_format = _output_formats(exec_properties)
    examples.split_names = artifact_utils.encode_split_names(
        example_gen_utils.generate_output_split_names(input_config, output_config))
    quarantine_dir = os.path.join(examples.uri, QUARANTINE_DIR)
    exec_properties = dict(exec_properties, _quarantine_dir=quarantine_dir)
    with self._make_beam_pipeline() as pipeline:
      splits = self.GenerateExamplesByBeam(pipeline, exec_properties)
      for split_name, split in splits.items():
        _ = split | f'WriteSplit[{split_name}]' >> beam.io.WriteToTFRecord(
            os.path.join(artifact_utils.get_split_uri([examples], split_name),
                         write_split.DEFAULT_TF_RECORD_FILE_NAME),
            file_name_suffix='.gz')
    examples_utils.set_payload_format(examples, payload_format)
    examples_utils.set_file_format(
        examples, write_split.to_file_format_str(file_format))
    _record_and_check_counts(examples, input_config, quarantine_dir,
                             exec_properties)
