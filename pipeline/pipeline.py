"""create_pipeline: the TFX pipeline's wiring, and nothing else."""
import os
from typing import Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.proto import range_config_pb2

from components.data_gate import component as data_gate
from components.evaluator import eval_config as evaluation
from components.pusher import executor as pusher_lib
from components.example_gen import component as example_gen_component
from pipeline import settings as config_lib

SCHEMA_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'schemas',
    'schema.pbtxt')
# Node ids, also used by the run summary to find each component's outputs.
EXAMPLE_GEN = 'PetExampleGen'
STATISTICS_GEN = 'StatisticsGen'
SCHEMA_GEN = 'ImportSchemaGen'
EXAMPLE_VALIDATOR = 'ExampleValidator'
DATA_GATE = 'DataValidationGate'
TRANSFORM = 'Transform'
TRAINING_SPANS_RESOLVER = 'TrainingSpansResolver'
TRAINER = 'Trainer'
BASELINE_RESOLVER = 'LatestBlessedModelResolver'
EVALUATOR = 'Evaluator'
PUSHER = 'Pusher'


def _training_examples(config: config_lib.PipelineConfig, example_gen):
  """The Examples to train on: this run's, or the newest N spans ingested so far.

  A rolling window uses TFX's SpanRangeStrategy over every Examples artifact
  the ExampleGen has produced in this pipeline's metadata (past runs included),
  so a scheduled run that ingests one new span trains on the last N.
  """
  if config.train_spans == 1:
    return [], example_gen.outputs['examples']
  resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
      config={'range_config': range_config_pb2.RangeConfig(
          rolling_range=range_config_pb2.RollingRange(
              num_spans=config.train_spans))},
      examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                               producer_component_id=EXAMPLE_GEN,
                               output_key='examples'),
  ).with_id(TRAINING_SPANS_RESOLVER)
  resolver.add_upstream_node(example_gen)  # this run's span first
  return [resolver], resolver.outputs['examples']


def create_pipeline(
    config: config_lib.PipelineConfig,
    metadata_connection_config: Optional[
        metadata_store_pb2.ConnectionConfig] = None,
    schema_file: str = SCHEMA_PATH,
) -> tfx.dsl.Pipeline:
  """Builds the pet-segmentation pipeline from one config.

  Args:
    config: every knob of the run.
    metadata_connection_config: ML Metadata store; None leaves it to the
      orchestrator (Kubeflow/Vertex bring their own; local_runner passes
      `config.metadata_connection_config()`: SQLite at `config.metadata_path`
      or a MySQL server).
    schema_file: the curated schema as the components see it (this
      checkout's schemas/schema.pbtxt; inside a container image, its copy).

  Returns:
    The TFX pipeline, runnable by LocalDagRunner or compiled for Kubeflow.
  """
  example_gen = example_gen_component.create_example_gen(
      config.data_root, spans=config.spans,
      min_valid_fraction=config.min_valid_fraction,
      span=config.span).with_id(EXAMPLE_GEN)
  examples = example_gen.outputs['examples']
  extra_nodes, training_examples = _training_examples(config, example_gen)
  statistics_gen = tfx.components.StatisticsGen(examples=examples)
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema'])
  gate = data_gate.DataValidationGate(
      anomalies=example_validator.outputs['anomalies']).with_id(DATA_GATE)
  transform = tfx.components.Transform(
      examples=training_examples, schema=schema_gen.outputs['schema'],
      preprocessing_fn=config_lib.PREPROCESSING_FN,
      custom_config={'code_fingerprint': config_lib.code_fingerprint(
          *config_lib.TRANSFORM_CODE)})
  # Nothing trains on data that breaks the schema.
  transform.add_upstream_node(gate)
  trainer = tfx.components.Trainer(
      run_fn=config_lib.RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      custom_config=config.trainer_config())
  baseline_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(BASELINE_RESOLVER)
  evaluator = tfx.components.Evaluator(
      examples=examples, model=trainer.outputs['model'],
      baseline_model=baseline_resolver.outputs['model'],
      eval_config=evaluation.create_eval_config(
          config.all_lower_bounds(),
          config.all_max_regressions()))
  pusher = pusher_lib.AtomicPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_model_dir))).with_id(PUSHER)

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, example_validator,
                  gate, *extra_nodes, transform, trainer, baseline_resolver, evaluator, pusher],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=config.beam_args)
