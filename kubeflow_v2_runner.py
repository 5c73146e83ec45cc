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

Flags that only make sense for a local run (--require-blessing,
--wait-for-lock, --report-images, ML Metadata flags) are accepted and ignored:
the orchestrator provides ML Metadata. Use the `--flag=value` form for
--beam-arg values that start with '--'.

Exit status: 0 when the spec was written; 2 for bad arguments; 1 when
compiling failed (the reason is printed on one line).
"""
import argparse
import dataclasses
import os
import re
import sys
import traceback
from typing import List, Optional, Tuple

import local_runner
from pipeline import settings as config_lib

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_OUTPUT_FILE = 'pet_segmentation_pipeline.json'
# KFP v2 pipeline names: [a-z0-9][a-z0-9-]{0,127} (no underscores).
DEFAULT_PIPELINE_NAME = config_lib.PIPELINE_NAME.replace('_', '-')
# Where the image holds this repository (see the module docstring).
IMAGE_REPO_ROOT = '/pipeline'
DEFAULT_SCHEMA_FILE = IMAGE_REPO_ROOT + '/schemas/schema.pbtxt'
_PIPELINE_NAME_RE = re.compile(r'[a-z0-9][a-z0-9-]{0,127}')


def _own_parser() -> argparse.ArgumentParser:
  """The flags local_runner.py does not have."""
  p = argparse.ArgumentParser(
      add_help=False, allow_abbrev=False,
      usage='%(prog)s --image IMAGE --data-root URI --output-dir URI [options]')
  p.add_argument('--image', required=True,
                 help='container image of every component (holds this repo at '
                      f'{IMAGE_REPO_ROOT})')
  p.add_argument('--output-file', default=DEFAULT_OUTPUT_FILE,
                 help=f'the compiled spec (.json, or .yaml) ({DEFAULT_OUTPUT_FILE})')
  p.add_argument('--pipeline-root', default=None,
                 help='artifacts root, e.g. gs://bucket/root (<output-dir>/tfx)')
  p.add_argument('--pipeline-name', default=DEFAULT_PIPELINE_NAME,
                 help=f'KFP pipeline name, [a-z0-9-] ({DEFAULT_PIPELINE_NAME})')
  p.add_argument('--schema-file', default=DEFAULT_SCHEMA_FILE,
                 help=f'the curated schema as the containers see it ({DEFAULT_SCHEMA_FILE})')
  return p


def parse_args(
    argv: Optional[List[str]] = None
) -> Tuple[argparse.Namespace, argparse.Namespace]:
  """Parses this runner's flags, then the rest with local_runner's parser.

  Args:
    argv: command-line arguments without the program name (default sys.argv).

  Returns:
    (own flags, local_runner flags). `--help` prints both parsers' help.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  own = _own_parser()
  if '-h' in argv or '--help' in argv:
    own.print_help()
    print('\nThe pipeline flags, shared with local_runner.py:\n')
    local_runner.parse_args(['--help'])  # prints and exits 0
  args, rest = own.parse_known_args(argv)
  return args, local_runner.parse_args(rest)


def build_config(args: argparse.Namespace,
                 shared: argparse.Namespace) -> config_lib.PipelineConfig:
  """The PipelineConfig for a remote run: paths kept as given (no abspath).

  Args:
    args: this runner's flags.
    shared: local_runner's flags.

  Returns:
    The config `create_pipeline` takes.

  Raises:
    ValueError: a flag value the pipeline cannot use (one-line message).
  """
  config = local_runner.build_config(shared)
  # local_runner makes local paths absolute; here they are the containers'
  # paths (gs://... or a path inside the image), so they are used as given.
  config = dataclasses.replace(
      config, data_root=shared.data_root, output_dir=shared.output_dir,
      pipeline_name=args.pipeline_name,
      # KFP/Vertex bring their own ML Metadata: local_runner's MySQL settings
      # (flags or an exported MLMD_MYSQL_*) do not apply here.
      metadata=config_lib.metadata_lib.MetadataConfig())
  if not _PIPELINE_NAME_RE.fullmatch(config.pipeline_name):
    raise ValueError(f'--pipeline-name {config.pipeline_name!r}: KFP needs '
                     '[a-z0-9][a-z0-9-]{0,127}')
  if config.train_spans != 1:
    # The rolling window is a SpanRangeStrategy resolver; the KFP v2 compiler
    # supports only the latest-artifact and latest-blessed-model resolvers.
    raise ValueError('--train-spans > 1 is not supported on Kubeflow/Vertex '
                     '(KFP v2 has no span-range resolver); use --train-spans 1')
  # An encoder weights file is a path inside the Trainer's container, which
  # cannot be checked from here; validate the other knobs as local_runner does.
  local_weights = config.encoder_weights in ('none', 'imagenet')
  problem = config_lib.validate(
      config if local_weights else
      dataclasses.replace(config, encoder_weights='imagenet'))
  if problem:
    raise ValueError(problem)
  return config


def create_kfp_pipeline(config: config_lib.PipelineConfig,
                        schema_file: str = DEFAULT_SCHEMA_FILE,
                        pipeline_root: Optional[str] = None):
  """`create_pipeline(config)`, adjusted for Kubeflow Pipelines v2.

  Args:
    config: the run's config (remote paths).
    schema_file: ImportSchemaGen's schema path as the containers see it.
    pipeline_root: artifacts root; default `config.pipeline_root`.

  Returns:
    The tfx.dsl.Pipeline to compile: no metadata connection (KFP/Vertex
    provide ML Metadata), the schema read from `schema_file`.
  """
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  # No metadata connection: KFP/Vertex bring their own ML Metadata.
  pipeline = pipeline_lib.create_pipeline(config, schema_file=schema_file)
  if pipeline_root:
    pipeline.pipeline_info.pipeline_root = pipeline_root
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
  args, shared = parse_args(argv)
  try:
    config = build_config(args, shared)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  if not shared.verbose:
    local_runner._quiet()  # pylint: disable=protected-access
  try:
    pipeline = create_kfp_pipeline(config, args.schema_file, args.pipeline_root)
    if not shared.verbose:
      local_runner._quiet()  # pylint: disable=protected-access
    compile_pipeline(pipeline, args.image, args.output_file)
  except Exception as e:  # pylint: disable=broad-except
    if shared.verbose:
      traceback.print_exc()
    print(f'error: compiling failed: {local_runner.one_line(e)}', file=sys.stderr)
    return EXIT_FAILED
  print(f'Wrote {args.output_file}: pipeline {config.pipeline_name}, '
        f'{len(pipeline.components)} components, image {args.image}, '
        f'root {pipeline.pipeline_info.pipeline_root}')
  return EXIT_OK


if __name__ == '__main__':
  sys.exit(main())
