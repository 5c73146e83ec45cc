"""TFX's LocalDagRunner, told which run id to use.

LocalDagRunner names each run after the time it starts and does not say which
it was; on a metadata store shared by concurrent runs, "the newest run" may be
someone else's. Substituting our own id first (TFX then finds nothing left to
substitute) lets the run's summary read exactly its own run.
"""
from tfx import v1 as tfx
from tfx.orchestration.portable import runtime_parameter_utils
from tfx.dsl.compiler import constants



class RunIdLocalDagRunner(tfx.orchestration.LocalDagRunner):
  """LocalDagRunner whose pipeline run id is `run_id`."""

  def __init__(self, run_id: str):
    super().__init__()
    self.run_id = run_id

  def run_with_ir(self, pipeline, run_options=None):
    runtime_parameter_utils.substitute_runtime_parameter(
        pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: self.run_id})
    return super().run_with_ir(pipeline, run_options=run_options)
