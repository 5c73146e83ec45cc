"""create_pipeline: the TFX pipeline's wiring, and nothing else."""
import os
from typing import Any, Dict, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.proto import range_config_pb2

from components import data_gate as data_gate_room
from components import evaluator as evaluator_room
from components import example_gen as example_gen_room
from components import infra_validator as infra_validator_room
from components import pusher as pusher_room
from components import trainer as trainer_room
from components import transform as transform_room
from components.data_gate import component as data_gate
from components.data_gate import drift
from components.evaluator import baseline
from components.evaluator import eval_config
from components.evaluator import executor as evaluator_executor
from components.example_gen import component as example_gen_component
from components.fingerprint import EXEC_PROPERTY, code_fingerprint
from components.infra_validator import component as infra_validator
from components.infra_validator import kubeflow as infra_kubeflow
from components.pusher import executor as pusher_executor
from components.trainer import encoder
from pipeline import settings

SCHEMA_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'schemas',
    'schema.pbtxt')
SCHEMA_DIGEST_PROPERTY = 'schema_sha256'
# Node ids, also used by the run summary to find each component's outputs.
EXAMPLE_GEN = 'PetExampleGen'
STATISTICS_GEN = 'StatisticsGen'
SCHEMA_GEN = 'ImportSchemaGen'
EXAMPLE_VALIDATOR = 'ExampleValidator'
DATA_GATE = 'DataValidationGate'
DRIFT_BASELINE_RESOLVER = 'TrainedStatisticsResolver'
DRIFT_VALIDATOR = 'DriftValidator'
TRANSFORM = 'Transform'
TRAINING_SPANS_RESOLVER = 'TrainingSpansResolver'
ENCODER_IMPORTER = 'EncoderWeightsImporter'
TUNER = 'Tuner'
TRAINER = 'Trainer'
BASELINE_RESOLVER = 'LatestBlessedModelResolver'
EVALUATOR = 'Evaluator'
INFRA_VALIDATOR = 'InfraValidator'
PUSHER = 'Pusher'


def with_code_fingerprint(component, code):
  """Adds the fingerprint of the code `component` runs to its exec properties.

  TFX's cache key covers a component's exec properties, so an edit to that
  code re-executes it (dotted-path module code is otherwise invisible to it).
  """
  component.exec_properties[EXEC_PROPERTY] = code_fingerprint(code)
  return component


def encoder_importer(encoder_weights: str) -> Optional[tfx.dsl.Importer]:
  """TFX's Importer for an encoder weights file (None for imagenet/none).

  The file becomes a Model artifact that the Trainer consumes as `base_model`:
  ML Metadata then links each trained model to the weights it started from.
  Its sha256 is a custom property, so a changed file is a new artifact and
  re-executes the Trainer; a path only the containers can see (Kubeflow) is
  imported without one.
  """
  if not encoder.is_file_source(encoder_weights):
    return None
  properties = ({encoder.SHA256_PROPERTY: encoder.sha256(encoder_weights)}
                if os.path.isfile(encoder_weights) else {})
  return tfx.dsl.Importer(
      source_uri=encoder_weights,
      artifact_type=tfx.types.standard_artifacts.Model,
      custom_properties=properties).with_id(ENCODER_IMPORTER)


def training_examples(config: settings.PipelineConfig, example_gen):
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


def drift_check(config: settings.PipelineConfig, statistics_gen,
                portable_baseline: bool = False):
  """(nodes, DriftValidator) comparing this span with the last one trained on.

  The baseline resolver runs before StatisticsGen, so it can only see earlier
  runs' statistics. Kubeflow Pipelines v2 compiles only TFX's stock resolver
  strategies: `portable_baseline` uses LatestArtifactStrategy there, i.e. the
  previous run's span whether or not it was trained on.
  """
  strategy = (tfx.dsl.experimental.LatestArtifactStrategy if portable_baseline
              else drift.LatestTrainedStatisticsStrategy)
  baseline = tfx.dsl.Resolver(
      strategy_class=strategy,
      statistics=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ExampleStatistics,
          producer_component_id=statistics_gen.id, output_key='statistics'),
  ).with_id(DRIFT_BASELINE_RESOLVER)
  statistics_gen.add_upstream_node(baseline)
  validator = drift.DriftValidator(
      statistics=statistics_gen.outputs['statistics'],
      baseline_statistics=baseline.outputs['statistics'],
      config=drift.drift_config(config.validation.thresholds()),
      include_split_pairs=drift.SPLIT_PAIRS).with_id(DRIFT_VALIDATOR)
  return [baseline, validator], validator


def split_image_tag(image: str):
  """'tensorflow/serving:2.16.1' -> ('tensorflow/serving', '2.16.1'); tag
  'latest' when none (a ':' before the last '/' is a registry port)."""
  if ':' in image.rsplit('/', 1)[-1]:
    name, _, tag = image.rpartition(':')
    return name, tag
  return image, 'latest'


def vertex_training_config(kfp: settings.KubeflowOptions) -> Dict[str, Any]:
  """custom_config of TFX's Vertex AI Trainer: a CustomJob of
  `kfp.vertex_training_workers` machines of `kfp.image`.

  Pool 0 is the chief (Vertex names it so in TF_CONFIG; only it writes the
  model, see components/trainer/module.py), pool 1 the other workers; every
  machine runs the same image, whose TFX entry point calls our run_fn.
  """
  machine = {'machine_type': kfp.vertex_machine_type}
  if kfp.vertex_accelerator_type:
    machine.update(accelerator_type=kfp.vertex_accelerator_type,
                   accelerator_count=kfp.vertex_accelerator_count)
  pool = lambda count: {'machine_spec': dict(machine), 'replica_count': count,
                        'container_spec': {'image_uri': kfp.image}}
  workers = kfp.vertex_training_workers
  pools = [pool(1)] + ([pool(workers - 1)] if workers > 1 else [])
  extension = tfx.extensions.google_cloud_ai_platform
  return {extension.ENABLE_VERTEX_KEY: True,
          extension.VERTEX_REGION_KEY: kfp.vertex_region,
          extension.TRAINING_ARGS_KEY: {'project': kfp.vertex_project,
                                        'worker_pool_specs': pools}}


def create_pipeline(
    config: settings.PipelineConfig,
    metadata_connection_config: Optional[
        metadata_store_pb2.ConnectionConfig] = None,
    schema_file: str = SCHEMA_PATH,
    vertex_training: Optional[Dict[str, Any]] = None,
    portable_drift_baseline: bool = False,
    serving_image: str = '',
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
    vertex_training: the Vertex AI Training extension's custom_config entries
      (`vertex_training_config`); given, the Trainer's run_fn runs as a
      Vertex CustomJob on those machines instead of in its own process.
    portable_drift_baseline: resolve the drift baseline and the Evaluator's
      baseline model with stock TFX strategies (Kubeflow compiles no other):
      see `drift_check`; the newest blessed model instead of the newest
      pushed one (components/evaluator/baseline.py).
    serving_image: given (Kubeflow clusters with TF Serving), TFX's own
      InfraValidator serves the model with that TF Serving image instead of
      our LocalInfraValidator's fresh-process probe.

  Returns:
    The TFX pipeline, runnable by LocalDagRunner or compiled for Kubeflow.
  """
  example_gen = example_gen_component.create_example_gen(
      config.data_root, spans=config.spans, span=config.span,
      options=config.ingestion,
      failed_quarantine_dir=config.failed_quarantine_dir).with_id(EXAMPLE_GEN)
  examples = example_gen.outputs['examples']
  extra_nodes, train_examples = training_examples(config, example_gen)
  statistics_gen = tfx.components.StatisticsGen(examples=examples)
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  if os.path.isfile(schema_file):
    # TFX's cache key sees the path only: an edited schema must be re-imported.
    schema_gen.exec_properties[SCHEMA_DIGEST_PROPERTY] = encoder.sha256(schema_file)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema'])
  drift_nodes, drift_validator = [], None
  if config.validation.drift_check:
    drift_nodes, drift_validator = drift_check(config, statistics_gen,
                                               portable_drift_baseline)
  gate = data_gate.DataValidationGate(
      anomalies=example_validator.outputs['anomalies'],
      drift=drift_validator.outputs['anomalies'] if drift_validator else None,
      allow_drift=int(config.validation.allow_drift)).with_id(DATA_GATE)
  transform = tfx.components.Transform(
      examples=train_examples, schema=schema_gen.outputs['schema'],
      preprocessing_fn=transform_room.PREPROCESSING_FN,
      # StatisticsGen already describes the raw data; TFDV statistics of 65,536
      # pixel values an example (pre- and post-transform) cost more than the
      # transform itself and held memory that grew with the data.
      disable_statistics=True)
  # Nothing trains on data that breaks the schema.
  transform.add_upstream_node(gate)
  encoder_import = encoder_importer(config.training.encoder_weights)
  base_model = encoder_import.outputs['result'] if encoder_import else None
  training_config = {trainer_room.CUSTOM_CONFIG_KEY:
                     config.training.to_custom_config()}
  tuner = None
  if config.training.tune_trials > 0:
    tuner = tfx.components.Tuner(
        tuner_fn=trainer_room.TUNER_FN,
        examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_gen.outputs['schema'], base_model=base_model,
        train_args=tfx.proto.TrainArgs(), eval_args=tfx.proto.EvalArgs(),
        custom_config=dict(training_config, **{
            trainer_room.TUNER_TRIALS_KEY: config.training.tune_trials}))
  trainer_class = tfx.components.Trainer
  if vertex_training:
    trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer
    training_config = dict(training_config, **vertex_training)
  trainer = trainer_class(
      run_fn=trainer_room.RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      base_model=base_model,
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      custom_config=training_config)
  if portable_drift_baseline:  # KFP v2 compiles TFX's stock strategies only
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER)
  else:
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=baseline.LatestPushedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        pushed_model=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.PushedModel,
            producer_component_id=PUSHER, output_key='pushed_model'),
    ).with_id(BASELINE_RESOLVER)
  evaluator = evaluator_executor.SliceGatedEvaluator(
      examples=examples, model=trainer.outputs['model'],
      baseline_model=baseline_resolver.outputs['model'],
      eval_config=eval_config.create_eval_config(
          config.evaluation.lower_bounds(),
          config.evaluation.all_max_regressions(),
          config.evaluation.slice_lower_bounds()),
  ).with_min_slice_size(config.evaluation.min_slice_size).with_id(EVALUATOR)
  infra = None
  if config.infra.infra_validation and serving_image:
    name, tag = split_image_tag(serving_image)
    infra = infra_kubeflow.KubeflowInfraValidator(
        infra_validator.create_tfx_infra_validator(
            trainer.outputs['model'], examples, name, tag, options=config.infra))
  elif config.infra.infra_validation:
    infra = infra_validator.create_infra_validator(
        trainer.outputs['model'], examples, evaluator.outputs['blessing'],
        config.infra)
  if infra is not None:
    infra = infra.with_id(INFRA_VALIDATOR)
  pusher = pusher_executor.AtomicPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      # TFX's Pusher pushes only a model that is blessed and infra-blessed.
      infra_blessing=(infra.outputs[infra_validator.OUTPUT_KEY if not serving_image
                                    else 'blessing'] if infra else None),
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_model_dir))).with_id(PUSHER)
  for component, code in ((example_gen, example_gen_room.CODE),
                          (gate, data_gate_room.CODE),
                          (transform, transform_room.CODE),
                          (trainer, trainer_room.CODE),
                          *([(tuner, trainer_room.CODE)] if tuner else []),
                          (evaluator, evaluator_room.CODE),
                          *([(infra, infra_validator_room.CODE)]
                            if infra and not serving_image else []),
                          (pusher, pusher_room.CODE)):
    with_code_fingerprint(component, code)

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=[example_gen, *drift_nodes[:1], statistics_gen, schema_gen,
                  example_validator, *drift_nodes[1:], gate, *extra_nodes, transform,
                  *[n for n in (encoder_import, tuner) if n], trainer, baseline_resolver, evaluator,
                  *[n for n in (infra,) if n], pusher],
      enable_cache=config.cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=config.all_beam_args)
