"""Every setting of a run, defined once: `PipelineConfig` and its nested rooms.

Each field made with `components.options.setting` carries its type, default,
help, group and check. The command line of both runners, `--config` files,
`--print-config`, the Trainer's custom_config and the README's flag table are
derived from these definitions (pipeline/cli.py); the components' own settings
live in their rooms (`TrainerOptions`, `ExampleGenOptions`, `EvaluatorOptions`).
"""
import dataclasses
import os
import warnings
from typing import List, Optional

from components.data_gate.options import DataGateOptions
from components.evaluator.options import EvaluatorOptions
from components.example_gen.options import ExampleGenOptions
from components.infra_validator.options import InfraValidatorOptions
from components.options import at_least, problems, setting
from components.trainer.options import TrainerOptions
from pipeline import metadata as metadata_lib

PIPELINE_NAME = 'pet_segmentation'
DATA, RUN, KUBEFLOW = 'data', 'run', 'Kubeflow Pipelines v2 / Vertex (kubeflow_v2_runner.py only)'
# Always passed to Beam first; --beam-arg values come after and win.
BASE_BEAM_ARGS = ('--direct_running_mode=in_memory',)


def _required(value: str) -> Optional[str]:
  return None if value else 'is required'


def beam_args_problem(args: List[str]) -> Optional[str]:
  """Why Beam would refuse or ignore some of `args`, or None.

  Parsed as Beam parses them (every PipelineOptions subclass's flags), but
  before anything runs: a bad value is one line here instead of Beam's usage
  text 25 s into the run, and an unknown flag (a typo) is refused instead of
  silently dropped ("Discarding unparseable args").
  """
  if not args:
    return None
  with warnings.catch_warnings():  # Beam's import warns about Google clients
    warnings.simplefilter('ignore')
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

  class StrictParser(pipeline_options._BeamArgumentParser):  # pylint: disable=protected-access
    def error(self, message):
      raise ValueError(message)

  parser = StrictParser(allow_abbrev=False)
  for cls in pipeline_options.PipelineOptions.__subclasses__():
    cls._add_argparse_args(parser)  # pylint: disable=protected-access
  try:
    _, unknown = parser.parse_known_args(args)
  except ValueError as e:
    return f'bad Beam option: {e}'
  if unknown:
    return f'unknown Beam option(s) {unknown} (not a flag of any Beam runner)'
  return None


@dataclasses.dataclass
class PipelineConfig:
  """Everything a run needs; the runners build it from flags and --config.

  Nested settings belong to the component that reads them: `ingestion` (the
  ExampleGen), `validation` (the data gate's drift check), `training` (the
  Trainer's custom_config), `evaluation` (the Evaluator's thresholds), `infra`
  (the infra validator before the Pusher), `metadata` (where ML Metadata lives).
  """
  data_root: str = setting(
      '', 'Oxford-IIIT Pet layout folder (images/, annotations/), or one '
      'holding span-N/ folders with --spans', DATA, metavar='DIR',
      check=_required)
  output_dir: str = setting(
      '', 'everything a run writes: tfx/, metadata.db, serving_model/, '
      'run_summary.json, report/', DATA, metavar='DIR', check=_required)
  spans: bool = setting(False, 'the data root holds span-N/ folders; read the '
                        'latest', DATA)
  span: Optional[int] = setting(None, 'with --spans: read span N instead of '
                                'the latest', DATA, metavar='N',
                                check=at_least(0))
  train_spans: int = setting(1, 'with --spans: train on the newest N spans '
                             'ingested so far', DATA, metavar='N',
                             check=at_least(1))
  ingestion: ExampleGenOptions = dataclasses.field(
      default_factory=ExampleGenOptions)
  validation: DataGateOptions = dataclasses.field(
      default_factory=DataGateOptions)
  training: TrainerOptions = dataclasses.field(default_factory=TrainerOptions)
  evaluation: EvaluatorOptions = dataclasses.field(
      default_factory=EvaluatorOptions)
  infra: InfraValidatorOptions = dataclasses.field(
      default_factory=InfraValidatorOptions)
  cache: bool = setting(True, 'reuse results of components whose inputs and '
                        'code did not change (--no-cache re-executes them)', RUN)
  beam_args: List[str] = setting(
      [], 'passed to every Beam-based component, e.g. '
      '--beam-arg=--direct_num_workers=2 (repeatable)', RUN,
      flag='--beam-arg', metavar='ARG', check=beam_args_problem)
  report_images: int = setting(8, 'the N worst and N best eval images pictured '
                               'in <output-dir>/report/index.html (0 = no report)',
                               RUN, metavar='N', check=at_least(0))
  wait_for_lock: float = setting(
      0.0, 'when another run uses --output-dir, wait up to S seconds for it '
      '(default: refuse at once, exit 4)', RUN, metavar='S', check=at_least(0))
  require_blessing: bool = setting(False, 'exit 3 when the model is not '
                                   'blessed or fails infra validation', RUN)
  verbose: bool = setting(False, 'show TFX/Beam/TensorFlow logs and '
                          'tracebacks', RUN)
  metadata: metadata_lib.MetadataConfig = dataclasses.field(
      default_factory=metadata_lib.MetadataConfig)
  pipeline_name: str = PIPELINE_NAME  # not a setting: the store's key

  def cross_check(self) -> Optional[str]:
    if (self.span is not None or self.train_spans != 1) and not self.spans:
      return '--span and --train-spans need --spans'
    return None

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, 'tfx')

  @property
  def metadata_path(self) -> str:
    """The SQLite store (used only when no MySQL server is configured)."""
    return os.path.join(self.output_dir, 'metadata.db')

  def metadata_connection_config(self):
    """The ML Metadata `ConnectionConfig` for this run (SQLite or MySQL)."""
    return metadata_lib.connection_config(self.metadata, self.metadata_path)

  @property
  def serving_model_dir(self) -> str:
    return os.path.join(self.output_dir, 'serving_model')

  @property
  def summary_path(self) -> str:
    return os.path.join(self.output_dir, 'run_summary.json')

  @property
  def failed_quarantine_dir(self) -> str:
    """Where quarantine records that explain a failed ingestion are kept."""
    return os.path.join(self.output_dir, 'quarantine')

  @property
  def all_beam_args(self) -> List[str]:
    return list(BASE_BEAM_ARGS) + list(self.beam_args)


@dataclasses.dataclass
class KubeflowOptions:
  """What only `kubeflow_v2_runner.py` needs."""
  image: str = setting('', 'container image of every component (holds this '
                       'repository at /pipeline)', KUBEFLOW, metavar='IMAGE',
                       check=_required)
  output_file: str = setting('pet_segmentation_pipeline.json', 'the compiled '
                             'spec (.json, or .yaml for the bare PipelineSpec)',
                             KUBEFLOW, metavar='PATH')
  pipeline_root: Optional[str] = setting(None, 'artifacts root (default '
                                         '<output-dir>/tfx)', KUBEFLOW,
                                         metavar='URI')
  pipeline_name: str = setting(PIPELINE_NAME.replace('_', '-'), 'KFP pipeline '
                               'name, [a-z0-9-] only', KUBEFLOW, metavar='NAME')
  schema_file: str = setting('/pipeline/schemas/schema.pbtxt', 'the curated '
                             'schema as the containers see it', KUBEFLOW,
                             metavar='PATH')
  vertex_training_workers: int = setting(
      0, 'train on Vertex AI Training with this many machines (1 chief + N-1 '
      'workers, MultiWorkerMirroredStrategy); 0 trains inside the pipeline '
      "step's container", KUBEFLOW, metavar='N', check=at_least(0))
  vertex_project: str = setting('', 'GCP project of the Vertex training job '
                                '(needed with --vertex-training-workers)',
                                KUBEFLOW, metavar='PROJECT')
  vertex_region: str = setting('us-central1', 'Vertex AI region of the '
                               'training job', KUBEFLOW, metavar='REGION')
  vertex_machine_type: str = setting('n1-standard-8', 'machine type of every '
                                     'training machine', KUBEFLOW,
                                     metavar='TYPE')
  vertex_accelerator_type: str = setting('', 'accelerator of every training '
                                         'machine, e.g. NVIDIA_TESLA_T4 '
                                         '(none by default)', KUBEFLOW,
                                         metavar='TYPE')
  vertex_accelerator_count: int = setting(1, 'accelerators per training '
                                          'machine, with '
                                          '--vertex-accelerator-type',
                                          KUBEFLOW, metavar='N',
                                          check=at_least(1))
  infra_serving_image: str = setting(
      '', 'validate the model with TFX\'s InfraValidator in this TensorFlow '
      'Serving image (e.g. tensorflow/serving:2.16.1) on the cluster, instead '
      'of the fresh-process probe', KUBEFLOW, metavar='IMAGE')

  def cross_check(self) -> Optional[str]:
    if self.vertex_training_workers and not self.vertex_project:
      return '--vertex-training-workers needs --vertex-project'
    return None


def validate(config) -> Optional[str]:
  """A one-line reason when a settings object cannot run, else None."""
  return problems(config)


def check_output_dir(config: PipelineConfig) -> Optional[str]:
  """A one-line reason when the output dir cannot be used (nothing is created)."""
  path = os.path.abspath(config.output_dir)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    if existing == path:
      return f'--output-dir {path} exists and is not a directory'
    return f'--output-dir {path} cannot be created: {existing} is not a directory'
  if not os.access(existing, os.W_OK | os.X_OK):
    return f'--output-dir {path}: {existing} is not writable'
  return None


def check_data_root(config: PipelineConfig) -> Optional[str]:
  """Returns a one-line reason when the data root is not a usable layout."""
  root = config.data_root
  if not os.path.isdir(root):
    return f'--data-root {root} is not a directory'
  if config.spans:
    spans = [d for d in os.listdir(root) if d.startswith('span-')]
    if not spans:
      return f'--data-root {root} has no span-N/ folders (--spans was given)'
    return None
  missing = [f for f in ('annotations/trainval.txt', 'annotations/test.txt',
                         'images', 'annotations/trimaps')
             if not os.path.exists(os.path.join(root, f))]
  if missing:
    return (f'--data-root {root} is not in the Oxford-IIIT Pet layout: missing '
            + ', '.join(missing))
  return None
