"""Infra validation before push: is the model servable, correct and fast enough?

TFX's InfraValidator starts TF Serving in Docker or Kubernetes; neither exists
on a laptop or a plain CI machine. `LocalInfraValidator` does what it does with
what is here: it loads the SavedModel in a fresh Python process (`probe.py`, no
project code imported, as a model server sees it), sends every signature real
eval examples one request at a time, checks their outputs against the serving
contract of components/trainer/export.py and times them. Its InfraBlessing is
written as TFX's InfraValidator writes it, so TFX's Pusher (`CheckBlessing`,
input `infra_blessing`) refuses a model that failed.

`create_tfx_infra_validator` builds TFX's own InfraValidator instead, for
clusters that have a TF Serving image.
"""
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, Optional, Sequence

from absl import logging
from tfx import v1 as tfx
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_component
from tfx.dsl.io import fileio
from tfx.proto import infra_validator_pb2
from tfx.types import Artifact, artifact_utils
from tfx.utils import io_utils, path_utils

from components import features
from components.infra_validator.options import InfraValidatorOptions

PROBE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'probe.py')
# Written as TFX's InfraValidator writes them (tfx/components/infra_validator/
# executor.py): a marker file, and the `blessed` int property Pusher reads.
BLESSED_FILE, NOT_BLESSED_FILE = 'INFRA_BLESSED', 'INFRA_NOT_BLESSED'
BLESSED_PROPERTY = 'blessed'
REASON_PROPERTY = 'reason'  # ours: one line, '' when blessed
MEASUREMENTS_FILE = 'infra_validation.json'
OUTPUT_KEY = 'infra_blessing'
EVAL_SPLIT = 'eval'
NOT_BLESSED_BY_EVALUATOR = 'model not blessed by the Evaluator'
_DEFAULTS = InfraValidatorOptions()

# The serving contract of components/trainer/export.py, restated here because
# importing export.py loads Keras and the model code (seconds per run); a test
# checks the names against export.py. FEEDS: input name -> what probe.py
# sends it, taken from each eval tf.Example.
SERVING_DEFAULT, TRANSFORM_FEATURES, IMAGE_BYTES = (
    'serving_default', 'transform_features', 'serving_image_bytes')
SIGNATURES = (SERVING_DEFAULT, TRANSFORM_FEATURES, IMAGE_BYTES)
FEEDS = {'examples': 'serialized',  # serialized raw tf.Examples
         'image_bytes': f'feature:{features.IMAGE_KEY}'}  # encoded image bytes


def serving_contract() -> Dict[str, Dict[str, Dict[str, Any]]]:
  """Signature -> output -> expected dtype, shape (batch of one) and range."""
  size, classes = features.IMAGE_SIZE, features.NUM_CLASSES
  class_ids = [0, classes - 1]
  probabilities = {'dtype': 'float32', 'shape': [1, size, size, classes],
                   'range': [0.0, 1.0]}
  return {
      SERVING_DEFAULT: {
          features.PROBABILITIES_KEY: probabilities,
          features.CLASS_MASK_KEY: {'dtype': 'int64', 'shape': [1, size, size],
                                    'range': class_ids}},
      TRANSFORM_FEATURES: {
          features.IMAGE_XF_KEY: {'dtype': 'int64', 'shape': [1, size, size, 3],
                                  'range': [0, 255]},
          features.MASK_XF_KEY: {'dtype': 'int64', 'shape': [1, size, size, 1],
                                 'range': class_ids}},
      IMAGE_BYTES: {
          # The mask comes at the image's own size (its height/width features).
          features.CLASS_MASK_KEY: {
              'dtype': 'uint8', 'range': class_ids,
              'shape': [1, features.HEIGHT_KEY, features.WIDTH_KEY]},
          features.HEIGHT_KEY: {'dtype': 'int32', 'shape': [1]},
          features.WIDTH_KEY: {'dtype': 'int32', 'shape': [1]},
          features.PROBABILITIES_KEY: probabilities},
  }


def run_probe(model_dir: str, example_files: Sequence[str], num_examples: int,
              required_signatures: Sequence[str], latency_budget_ms: float,
              timeout_seconds: float) -> Dict[str, Any]:
  """Runs probe.py in a fresh process; returns its verdict and measurements.

  Returns:
    The probe's JSON result ('ok', 'reason', 'signatures', ...) plus
    'probe_seconds'; a crash or a timeout is a result with ok False too.
  """
  request = {'model_dir': model_dir, 'example_files': list(example_files),
             'num_examples': num_examples,
             'required_signatures': list(required_signatures),
             'feeds': FEEDS, 'expectations': serving_contract(),
             'latency_budget_ms': latency_budget_ms}
  started = time.perf_counter()
  cpu_before = _children_cpu_seconds()
  try:
    done = subprocess.run([sys.executable, PROBE_SCRIPT, json.dumps(request)],
                          capture_output=True, text=True, timeout=timeout_seconds,
                          check=False)
  except subprocess.TimeoutExpired:
    result = {'ok': False, 'reason': f'the probe timed out after '
                                     f'{timeout_seconds:g} s (model load or a request hung)'}
  else:
    result = _parse_result(done)
  result['probe_seconds'] = round(time.perf_counter() - started, 2)
  # CPU time says what the check costs whatever else shares the machine.
  result['probe_cpu_seconds'] = round(_children_cpu_seconds() - cpu_before, 2)
  return result


def _children_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _parse_result(done: subprocess.CompletedProcess) -> Dict[str, Any]:
  """The probe's JSON line, or a failure naming how the process ended."""
  for line in reversed(done.stdout.splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  how = (f'was killed by signal {-done.returncode}' if done.returncode < 0
         else f'exited with status {done.returncode}')
  last = [line for line in done.stderr.splitlines() if line.strip()][-1:]
  return {'ok': False, 'reason': f'the probe process {how} without a verdict'
                                 + (f': {last[0].strip()}' if last else '')}


def validate(model: Artifact, examples: Artifact,
             infra_blessing: Artifact,
             blessing: Optional[Artifact] = None,
             num_examples: int = _DEFAULTS.infra_examples,
             latency_budget_ms: float = _DEFAULTS.infra_latency_budget_ms,
             timeout_seconds: float = _DEFAULTS.infra_timeout_seconds,
             required_signatures: Sequence[str] = SIGNATURES) -> Dict[str, Any]:
  """Probes `model` and writes the verdict into `infra_blessing`.

  Args:
    model: the Trainer's Model (the SavedModel in its Format-Serving dir).
    examples: raw Examples with an eval split (GZIP TFRecords).
    infra_blessing: the output; gets the INFRA_BLESSED or INFRA_NOT_BLESSED
      file, the `blessed` (1/0) and `reason` properties and MEASUREMENTS_FILE.
    blessing: the Evaluator's ModelBlessing; if not blessed, nothing is probed.
    num_examples, latency_budget_ms, timeout_seconds, required_signatures:
      see InfraValidatorOptions and probe.py.

  Returns:
    What MEASUREMENTS_FILE holds.
  """
  if blessing is not None and not model_utils.is_model_blessed(blessing):
    result = {'ok': False, 'reason': NOT_BLESSED_BY_EVALUATOR, 'skipped': True}
  else:
    model_dir = path_utils.serving_model_path(
        model.uri, path_utils.is_old_model_artifact(model))
    split_dir = artifact_utils.get_split_uri([examples], EVAL_SPLIT)
    result = run_probe(model_dir, sorted(fileio.glob(os.path.join(split_dir, '*'))),
                       num_examples, required_signatures, latency_budget_ms,
                       timeout_seconds)
  result['latency_budget_ms'] = latency_budget_ms
  io_utils.write_string_file(os.path.join(infra_blessing.uri, MEASUREMENTS_FILE),
                             json.dumps(result, indent=2, sort_keys=True))
  marker = BLESSED_FILE if result['ok'] else NOT_BLESSED_FILE
  io_utils.write_string_file(os.path.join(infra_blessing.uri, marker), '')
  infra_blessing.set_int_custom_property(BLESSED_PROPERTY, int(result['ok']))
  infra_blessing.set_string_custom_property(REASON_PROPERTY, result['reason'])
  if result['ok']:
    logging.info('Model passed infra validation: %s', result['signatures'])
  else:
    logging.warning('Model failed infra validation: %s', result['reason'])
  return result


@tfx.dsl.components.component
def LocalInfraValidator(  # pylint: disable=invalid-name
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.Examples],
    infra_blessing: tfx.dsl.components.OutputArtifact[
        tfx.types.standard_artifacts.InfraBlessing],
    num_examples: tfx.dsl.components.Parameter[int],
    latency_budget_ms: tfx.dsl.components.Parameter[float],
    timeout_seconds: tfx.dsl.components.Parameter[int],
    signatures: tfx.dsl.components.Parameter[str],
    blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ModelBlessing] = None,
) -> None:
  """Serves the model in a fresh process and blesses it if it works (see `validate`).

  `signatures` is the comma-separated list the model must have.
  """
  validate(model, examples, infra_blessing, blessing, num_examples,
           latency_budget_ms, timeout_seconds,
           [s for s in signatures.split(',') if s])


def create_infra_validator(
    model: tfx.types.BaseChannel, examples: tfx.types.BaseChannel,
    blessing: Optional[tfx.types.BaseChannel] = None,
    options: InfraValidatorOptions = InfraValidatorOptions(),
    required_signatures: Sequence[str] = SIGNATURES,
) -> Optional[base_component.BaseComponent]:
  """The LocalInfraValidator to wire between Evaluator and Pusher.

  Args:
    model: the Trainer's `model` output.
    examples: the raw Examples (ExampleGen's `examples`; its eval split is used).
    blessing: the Evaluator's `blessing`; a model it did not bless is not probed.
    options: the settings (`infra_validation` False: no component, None).
    required_signatures: signatures the model must have.

  Returns:
    The component (its output is `OUTPUT_KEY`, for the Pusher's
    `infra_blessing`), or None when infra validation is off.
  """
  if not options.infra_validation:
    return None
  return LocalInfraValidator(
      model=model, examples=examples, blessing=blessing,
      num_examples=options.infra_examples,
      latency_budget_ms=float(options.infra_latency_budget_ms),
      timeout_seconds=options.infra_timeout_seconds,
      signatures=','.join(required_signatures))


def create_tfx_infra_validator(
    model: tfx.types.BaseChannel, examples: tfx.types.BaseChannel,
    serving_image: str, tag: str = 'latest',
    options: InfraValidatorOptions = InfraValidatorOptions(),
    signature_names: Sequence[str] = (SERVING_DEFAULT, TRANSFORM_FEATURES),
    service_account: str = '',
) -> tfx.components.InfraValidator:
  """TFX's InfraValidator: TF Serving (`serving_image:tag`) in a Kubernetes pod.

  For clusters that have TF Serving. Its output is `blessing` (also an
  InfraBlessing). TF Serving's Predict API is sent `options.infra_examples`
  eval examples per signature; it checks that the model loads and answers,
  not outputs or latency (LocalInfraValidator's extra checks).

  Args:
    model: the Trainer's `model` output.
    examples: the raw Examples (eval split).
    serving_image: TF Serving image name, e.g. 'tensorflow/serving'.
    tag: its tag.
    options: `infra_examples` and `infra_timeout_seconds` are used.
    signature_names: signatures to send requests to: TFX's request builder
      feeds every one serialized tf.Examples, so not serving_image_bytes.
    service_account: the serving pod's Kubernetes service account ('' = default).
  """
  return tfx.components.InfraValidator(
      model=model, examples=examples,
      serving_spec=infra_validator_pb2.ServingSpec(
          tensorflow_serving=infra_validator_pb2.TensorFlowServing(
              image_name=serving_image, tags=[tag]),
          kubernetes=infra_validator_pb2.KubernetesConfig(
              service_account_name=service_account)),
      request_spec=infra_validator_pb2.RequestSpec(
          tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
              signature_names=list(signature_names)),
          split_name=EVAL_SPLIT, num_examples=options.infra_examples),
      validation_spec=infra_validator_pb2.ValidationSpec(
          max_loading_time_seconds=options.infra_timeout_seconds, num_tries=1))
