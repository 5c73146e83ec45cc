"""One typed configuration object: every knob from the CLI to the components."""
import dataclasses
import hashlib
import os
import pathlib
from typing import Dict, List, Optional

from components import features
from pipeline import metadata as metadata_lib

PIPELINE_NAME = 'pet_segmentation'
# Module code referenced by dotted path (TFX template style): importable on
# remote workers once `setup.py` ships the `components` package.
PREPROCESSING_FN = 'components.transform.preprocessing_fn'
RUN_FN = 'components.trainer.run_fn'

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def code_fingerprint(*modules: str) -> str:
  """Hash of the named files under `components/` (all of them if none named).

  Dotted-path module code is not part of TFX's cache key (unlike module_file);
  passing this fingerprint in a component's custom config makes an edit to the
  code it runs re-execute it instead of silently reusing old results.
  """
  root = _REPO_ROOT / 'components'
  paths = [root / m for m in modules] if modules else root.rglob('*.py')
  digest = hashlib.sha256()
  for path in sorted(paths):
    digest.update(path.relative_to(_REPO_ROOT).as_posix().encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()[:16]


# The code each component runs (what its cache must see).
TRANSFORM_CODE = ('features.py', 'transform.py')
TRAINER_CODE = ('features.py', 'model.py', 'trainer.py', 'export.py',
                'transform.py')


@dataclasses.dataclass
class PipelineConfig:
  """Everything a run needs; `local_runner.py` builds it from flags.

  Attributes:
    data_root: Oxford-IIIT Pet layout folder (or one holding span-N/ folders).
    output_dir: all outputs: pipeline root, metadata.db, serving_model/, summary.
    epochs: training epochs.
    batch_size: training and evaluation batch size.
    learning_rate: Adam learning rate.
    encoder_weights: 'imagenet' (from the local Keras cache), 'none', or a path.
    train_encoder: train the MobileNetV2 encoder too (else only the decoder).
    fine_tune_blocks: after `epochs`, unfreeze this many of the encoder's top
      blocks (0 = no fine-tuning phase).
    fine_tune_epochs: epochs of the fine-tuning phase.
    fine_tune_learning_rate: its (lower) learning rate.
    early_stopping_patience: stop after this many epochs without a lower eval
      loss and keep the best weights (0 = off).
    cache_examples: keep the transformed train and eval examples in memory
      after the first epoch (~0.2 MB an image at 128x128; the full
      Oxford-IIIT Pet trainval set ~0.8 GB) instead of re-reading them.
    min_mean_iou: absolute lower bound on the eval mean IoU for blessing.
    lower_bounds: further absolute lower bounds, metric name -> value.
    max_regressions: further no-regression tolerances, metric name -> value.
    max_regression: how much the candidate's mean IoU may fall below the
      baseline's and still be blessed (0 = not worse).
    min_valid_fraction: fail ingestion when fewer listed pairs are valid.
    spans: read span-N/ sub-folders (latest span by default).
    span: with spans, read this span instead of the latest.
    train_spans: with spans, train on the newest this-many spans ingested so
      far (a rolling window over this pipeline's history); evaluation always
      uses the newest span's eval split.
    enable_cache: reuse results of unchanged components.
    beam_args: passed to every Beam-based component.
    metadata: where ML Metadata lives: SQLite at `metadata_path` (default)
      or a shared MySQL/MariaDB server (see pipeline/metadata.py).
    seed: seed for training (shuffling, initialisation).
  """
  data_root: str
  output_dir: str
  epochs: int = 10
  batch_size: int = 16
  learning_rate: float = 1e-3
  encoder_weights: str = 'none'
  train_encoder: bool = True
  fine_tune_blocks: int = 0
  fine_tune_epochs: int = 0
  fine_tune_learning_rate: float = 1e-4
  early_stopping_patience: int = 5
  cache_examples: bool = True
  min_mean_iou: float = 0.0
  lower_bounds: Dict[str, float] = dataclasses.field(default_factory=dict)
  max_regression: float = 0.0
  max_regressions: Dict[str, float] = dataclasses.field(default_factory=dict)
  min_valid_fraction: float = 0.5
  spans: bool = False
  span: Optional[int] = None
  train_spans: int = 1
  enable_cache: bool = True
  beam_args: List[str] = dataclasses.field(
      default_factory=lambda: ['--direct_running_mode=in_memory'])
  seed: int = 0
  pipeline_name: str = PIPELINE_NAME
  metadata: metadata_lib.MetadataConfig = dataclasses.field(
      default_factory=metadata_lib.MetadataConfig)

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

  def all_max_regressions(self) -> Dict[str, float]:
    """No-regression tolerances per metric, mean IoU included."""
    return {features.MEAN_IOU: self.max_regression, **self.max_regressions}

  def all_lower_bounds(self) -> Dict[str, float]:
    """Absolute lower bounds per metric, mean IoU included."""
    return {'mean_iou': self.min_mean_iou, **self.lower_bounds}

  def trainer_config(self) -> Dict[str, object]:
    """The Trainer's custom_config (plain JSON-able values)."""
    return {'epochs': self.epochs, 'batch_size': self.batch_size,
            'learning_rate': self.learning_rate,
            'encoder_weights': self.encoder_weights,
            'train_encoder': self.train_encoder, 'seed': self.seed,
            'fine_tune_blocks': self.fine_tune_blocks,
            'fine_tune_epochs': self.fine_tune_epochs,
            'fine_tune_learning_rate': self.fine_tune_learning_rate,
            'early_stopping_patience': self.early_stopping_patience,
            'cache_examples': self.cache_examples,
            'code_fingerprint': code_fingerprint(*TRAINER_CODE)}


def validate(config: PipelineConfig) -> Optional[str]:
  """Returns a one-line reason when the config cannot run, else None."""
  problem = metadata_lib.validate(config.metadata)
  if problem:
    return problem
  unknown = sorted((set(config.lower_bounds) | set(config.max_regressions)) -
                   set(features.METRIC_NAMES))
  if unknown:
    return (f'--threshold/--max-regression-for: unknown metric(s) {unknown}; known: '
            f'{list(features.METRIC_NAMES)}')
  if (config.span is not None or config.train_spans != 1) and not config.spans:
    return '--span and --train-spans need --spans'
  if config.train_spans < 1 or (config.span is not None and config.span < 0):
    return '--train-spans must be at least 1 and --span not negative'
  if not 0 <= config.fine_tune_blocks <= 16 or config.fine_tune_epochs < 0:
    return '--fine-tune-blocks must be within [0, 16] and --fine-tune-epochs >= 0'
  if config.epochs < 1 or config.batch_size < 1:
    return '--epochs and --batch-size must be at least 1'
  if not 0.0 <= config.min_valid_fraction <= 1.0:
    return '--min-valid-fraction must be within [0, 1]'
  if (config.encoder_weights == 'none' and not config.train_encoder):
    return ('--freeze-encoder with --encoder-weights none: a frozen randomly '
            'initialised encoder learns nothing; use --train-encoder or give weights')
  if config.encoder_weights not in ('none', 'imagenet') and not os.path.isfile(
      config.encoder_weights):
    return f'--encoder-weights: no such file {config.encoder_weights}'
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
