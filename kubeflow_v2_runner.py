"""Compiles the pet-segmentation pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

  python kubeflow_v2_runner.py --image IMAGE --data-root gs://B/pets \
      --output-dir gs://B/pet-run [--output-file pet_segmentation_pipeline.json] \
      [--pipeline-root gs://B/root] [--beam-arg=--runner=DataflowRunner ...] \
      [every training / evaluation flag of local_runner.py]

Writes a KFP v2 PipelineJob spec (JSON; YAML when --output-file ends in .yaml)
built by TFX's KubeflowV2DagRunner from the same `create_pipeline(config)` that
local_runner.py runs. Nothing is run, uploaded or checked remotely: compiling
works offline, and --data-root / --output-dir are not required to exist here
(they are the paths the containers will read and write, usually gs://...).

Container image convention: IMAGE is a TFX 1.16 image (e.g. built FROM
gcr.io/tfx-oss-public/tfx:1.16.0) holding this repository at /pipeline with
its packages importable (`pip install --no-deps /pipeline`), so the custom
executors and the dotted module paths (components.transform.preprocessing_fn,
components.trainer.run_fn) import in every container, and the curated schema
is read from /pipeline/schemas/schema.pbtxt (--schema-file to change it).
Beam components pass --beam-arg values to Beam, e.g.
--beam-arg=--runner=DataflowRunner --beam-arg=--setup_file=/pipeline/setup.py.

The command line is local_runner.py's (pipeline/cli.py: same flags, same
--config files) plus this runner's own settings (`KubeflowOptions`). Flags that
only make sense for a local run (--require-blessing, --wait-for-lock,
--report-images, ML Metadata flags) are accepted and ignored: the orchestrator
provides ML Metadata. Use the `--flag=value` form for --beam-arg values that
start with '--'.

Exit status: 0 when the spec was written; 2 for bad arguments; 1 when
compiling failed (the reason is printed on one line).
"""
import dataclasses
import os
import re
import sys
import traceback
from typing import List, Optional, Tuple

from pipeline import cli
from pipeline import metadata as metadata_lib
from pipeline import settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DESCRIPTION = __doc__.split('\n', maxsplit=1)[0]
# KFP v2 pipeline names: [a-z0-9][a-z0-9-]{0,127} (no underscores).
_PIPELINE_NAME_RE = re.compile(r'[a-z0-9][a-z0-9-]{0,127}')


def parse_config(
    argv: Optional[List[str]] = None
) -> Tuple[settings.KubeflowOptions, settings.PipelineConfig, bool]:
  """(this runner's options, the pipeline config, --print-config given).

  Paths are kept as given: they are the containers' paths (gs://... or a
  path inside the image), not this machine's.

  Raises:
    cli.UsageError: bad usage, or a value the pipeline cannot use.
  """
  (kfp, config), args = cli.parse(argv, cli.KUBEFLOW_CLASSES, DESCRIPTION)
  # KFP/Vertex bring their own ML Metadata: MySQL settings (flags or an
  # exported MLMD_MYSQL_*) do not apply here.
  config = dataclasses.replace(config, pipeline_name=kfp.pipeline_name,
                               metadata=metadata_lib.MetadataConfig())
  return kfp, config, args.print_config


def check(kfp: settings.KubeflowOptions,
          config: settings.PipelineConfig) -> Optional[str]:
  """A one-line reason the pipeline cannot be compiled for KFP, or None."""
  if not _PIPELINE_NAME_RE.fullmatch(kfp.pipeline_name):
    return (f'--pipeline-name {kfp.pipeline_name!r}: KFP needs '
            '[a-z0-9][a-z0-9-]{0,127}')
  if config.train_spans != 1:
    # The rolling window is a SpanRangeStrategy resolver; the KFP v2 compiler
    # supports only the latest-artifact and latest-blessed-model resolvers.
    return ('--train-spans > 1 is not supported on Kubeflow/Vertex '
            '(KFP v2 has no span-range resolver); use --train-spans 1')
  # An encoder weights file is a path inside the Trainer's container, which
  # cannot be checked from here; the other knobs are checked as locally.
  training = config.training
  if training.encoder_weights not in ('none', 'imagenet'):
    training = dataclasses.replace(training, encoder_weights='imagenet')
  return (settings.validate(kfp) or
          settings.validate(dataclasses.replace(config, training=training)))


def create_kfp_pipeline(config: settings.PipelineConfig,
                        kfp: settings.KubeflowOptions):
  """`create_pipeline(config)`, adjusted for Kubeflow Pipelines v2.

  Args:
    config: the run's config (remote paths).
    kfp: this runner's options: the schema path as the containers see it, the
      artifacts root (default `config.pipeline_root`), and with
      --vertex-training-workers the Trainer as a Vertex AI Training job (TFX's
      extension).

  Returns:
    The tfx.dsl.Pipeline to compile: no metadata connection (KFP/Vertex
    provide ML Metadata), the schema read from `kfp.schema_file`.
  """
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  vertex = (pipeline_lib.vertex_training_config(kfp)
            if kfp.vertex_training_workers else None)
  pipeline = pipeline_lib.create_pipeline(config, schema_file=kfp.schema_file,
                                          vertex_training=vertex,
                                          portable_drift_baseline=True,
                                          serving_image=kfp.infra_serving_image)
  if kfp.pipeline_root:
    pipeline.pipeline_info.pipeline_root = kfp.pipeline_root
  return pipeline


def compile_pipeline(pipeline, image: str, output_file: str) -> dict:
  """Compiles a TFX pipeline into a KFP v2 spec file (offline).

  Args:
    pipeline: the tfx.dsl.Pipeline.
    image: container image of every component.
    output_file: where the spec goes (.json, or .yaml for the bare spec).

  Returns:
    The PipelineJob as a dict (what the JSON file holds).
  """
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  output_dir, filename = os.path.split(os.path.abspath(output_file))
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=image),
      output_dir=output_dir, output_filename=filename)
  return runner.run(pipeline)


def main(argv: Optional[List[str]] = None) -> int:
  try:
    kfp, config, print_only = parse_config(argv)
    if print_only:
      print(cli.format_settings(kfp, config), end='')
      return EXIT_OK
    problem = check(kfp, config)
    if problem:
      raise cli.UsageError(problem)
  except cli.UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  from pipeline import console  # pylint: disable=g-import-not-at-top
  if not config.verbose:
    console.quiet_environment()
  undo = console.configure_logging(config.verbose, [])
  try:
    pipeline = create_kfp_pipeline(config, kfp)
    compile_pipeline(pipeline, kfp.image, kfp.output_file)
  except Exception as e:  # pylint: disable=broad-except
    if config.verbose:
      traceback.print_exc()
    print(f'error: compiling failed: {cli.one_line(e)}', file=sys.stderr)
    return EXIT_FAILED
  finally:
    undo()
  print(f'Wrote {kfp.output_file}: pipeline {config.pipeline_name}, '
        f'{len(pipeline.components)} components, image {kfp.image}, '
        f'root {pipeline.pipeline_info.pipeline_root}')
  return EXIT_OK


if __name__ == '__main__':
  sys.exit(main())
