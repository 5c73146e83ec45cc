"""TFX's own InfraValidator, in a form KubeflowV2DagRunner compiles.

TFX 1.16's Kubeflow v2 step builder refuses any `tfx.components.InfraValidator`
by its type ("The component type ... is not supported"), although its executor
runs in a container like every other component's and, given a
`KubernetesConfig`, starts the TensorFlow Serving pod from inside the cluster.
This class carries the stock spec, executor and driver unchanged under another
type, so a Kubeflow Pipelines cluster that can run TF Serving pods (its
pipeline runner's service account allowed to create pods) gets the real thing.
Vertex AI Pipelines has no Kubernetes cluster to start such a pod in: use the
fresh-process probe there.
"""
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component

_STOCK = tfx.components.InfraValidator


class KubeflowInfraValidator(base_component.BaseComponent):
  """TFX's InfraValidator (same spec, executor and driver) under its own type."""

  SPEC_CLASS = _STOCK.SPEC_CLASS
  EXECUTOR_SPEC = _STOCK.EXECUTOR_SPEC
  DRIVER_CLASS = _STOCK.DRIVER_CLASS

  def __init__(self, stock: tfx.components.InfraValidator):
    """Takes over a configured stock InfraValidator's spec."""
    super().__init__(spec=stock.spec)
