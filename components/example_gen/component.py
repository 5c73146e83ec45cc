"""PetExampleGen: TFX's FileBasedExampleGen with the Oxford-IIIT Pet executor and driver."""
from typing import Any, Dict, Optional

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.example_gen import driver, executor
from components.example_gen.options import ExampleGenOptions

TRAIN_LIST = 'annotations/trainval.txt'
EVAL_LIST = 'annotations/test.txt'
SPAN_PREFIX = 'span-{SPAN}'


def input_config(spans: bool) -> example_gen_pb2.Input:
  """Splits from the official list files: train <- trainval.txt, eval <- test.txt."""
  prefix = SPAN_PREFIX + '/' if spans else ''
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name='train', pattern=prefix + TRAIN_LIST),
      example_gen_pb2.Input.Split(name='eval', pattern=prefix + EVAL_LIST),
  ])


def executor_properties(input_base: str,
                        options: Optional[Dict[str, Any]] = None
                        ) -> Dict[str, Any]:
  """The exec properties TFX's driver hands the executor for a span-less layout.

  For calling `executor.Executor().Do` directly, as TFX's own executor tests
  do (our tests and benchmarks).

  Args:
    input_base: the Oxford-IIIT Pet layout folder.
    options: executor options such as {'min_valid_fraction': 0.8} (the
      fields of ExampleGenOptions and executor.FAILED_QUARANTINE_DIR_KEY).
  """
  return {
      standard_component_specs.INPUT_BASE_KEY: input_base,
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
          input_config(spans=False)),
      standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
          example_gen_pb2.Output()),
      standard_component_specs.OUTPUT_FILE_FORMAT_KEY:
          example_gen_pb2.FORMAT_TFRECORDS_GZIP,
      standard_component_specs.OUTPUT_DATA_FORMAT_KEY:
          example_gen_pb2.FORMAT_TF_EXAMPLE,
      standard_component_specs.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(
          executor.custom_config_proto(options or {})),
  }


class PetExampleGen(FileBasedExampleGen):
  """FileBasedExampleGen whose cache key also sees the listed images and trimaps."""
  DRIVER_CLASS = driver.PetDriver


def create_example_gen(
    data_root: str,
    spans: bool = False,
    span: Optional[int] = None,
    options: Optional[ExampleGenOptions] = None,
    failed_quarantine_dir: Optional[str] = None,
) -> FileBasedExampleGen:
  """Builds the ExampleGen component for an Oxford-IIIT Pet layout folder.

  Args:
    data_root: the folder holding images/ and annotations/ (or span-N/ folders).
    spans: read `span-N/` sub-folders through TFX's span mechanism.
    span: with spans, this span instead of the latest (TFX static range).
    options: the executor's settings; None for the defaults.
    failed_quarantine_dir: where a failed run keeps its quarantine (TFX
      deletes a failed component's outputs); None to keep nothing.
  """
  range_config = None
  if span is not None:
    range_config = range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(
            start_span_number=span, end_span_number=span))
  config = (options or ExampleGenOptions()).to_executor_options()
  if failed_quarantine_dir:
    config[executor.FAILED_QUARANTINE_DIR_KEY] = failed_quarantine_dir
  return PetExampleGen(
      input_base=data_root,
      input_config=input_config(spans),
      custom_config=executor.custom_config_proto(config),
      range_config=range_config,
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor))
