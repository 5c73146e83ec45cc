"""PetExampleGen: TFX's FileBasedExampleGen with the Oxford-IIIT Pet executor."""
from typing import Optional

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.example_gen import executor

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


def create_example_gen(
    data_root: str,
    spans: bool = False,
    min_valid_fraction: float = executor.DEFAULT_MIN_VALID_FRACTION,
    span: Optional[int] = None,
) -> FileBasedExampleGen:
  """Builds the ExampleGen component for an Oxford-IIIT Pet layout folder.

  Args:
    data_root: the folder holding images/ and annotations/ (or span-N/ folders).
    spans: read `span-N/` sub-folders through TFX's span mechanism.
    min_valid_fraction: fail the run when fewer listed pairs are valid.
    span: with spans, this span instead of the latest (TFX static range).
  """
  range_config = None
  if span is not None:
    range_config = range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(
            start_span_number=span, end_span_number=span))
  return FileBasedExampleGen(
      input_base=data_root,
      input_config=input_config(spans),
      custom_config=executor.custom_config_proto(
          {'min_valid_fraction': min_valid_fraction}),
      range_config=range_config,
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor))
