"""Pusher with an atomic filesystem push.

TFX's Pusher copies the model file by file into `<base>/<version>/` (writing
saved_model.pb last), so a run killed mid-push leaves a half-written version
directory that a model server polling `<base>` may try to load, and that stays
there. This executor copies into a hidden staging directory first and renames
it into place, so `<base>/<version>/` appears complete or not at all (rename is
atomic on a local/POSIX file system). Staging left by a killed push is removed
by the next push. Everything else is TFX's Pusher.
"""
import os
import time

from absl import logging
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

STAGING_PREFIX = '.staging-'  # not a number: TF Serving ignores it


class Executor(pusher_executor.Executor):
  """Pushes a blessed model to the filesystem atomically (stage, then rename)."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict) or _is_its_own_baseline(input_dict):
      self._MarkNotPushed(model_push)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
        destination)
    base = destination.filesystem.base_directory
    version = str(int(time.time()))
    serving_path = os.path.join(base, version)
    fileio.makedirs(base)
    _remove_stale_staging(base)
    if fileio.exists(serving_path):  # same second as an earlier push
      raise RuntimeError(f'{serving_path} already exists; not overwriting it')
    staging = os.path.join(base, STAGING_PREFIX + version)
    io_utils.copy_dir(self.GetModelPath(input_dict), staging)
    fileio.rename(staging, serving_path)
    logging.info('Model pushed atomically to %s.', serving_path)
    io_utils.copy_dir(self.GetModelPath(input_dict), model_push.uri)
    self._MarkPushed(model_push, pushed_destination=serving_path,
                     pushed_version=version)


def _is_its_own_baseline(input_dict) -> bool:
  """True when the Evaluator compared the model with itself.

  That happens when a scheduled run finds no new data: every upstream result
  is reused, so the candidate is the last blessed model, which was pushed when
  it was first blessed. Pushing it again would only add a duplicate version.
  """
  blessing = artifact_utils.get_single_instance(
      input_dict[standard_component_specs.MODEL_BLESSING_KEY])
  baseline = blessing.get_int_custom_property(
      evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY)
  return bool(baseline) and baseline == blessing.get_int_custom_property(
      evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY)


def _remove_stale_staging(base: str) -> None:
  for name in fileio.listdir(base):
    if name.startswith(STAGING_PREFIX):
      logging.warning('Removing staging left by an interrupted push: %s', name)
      fileio.rmtree(os.path.join(base, name))


class AtomicPusher(pusher_component.Pusher):
  """TFX's Pusher component, running the atomic executor."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
