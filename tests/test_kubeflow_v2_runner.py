"""kubeflow_v2_runner.py: the pipeline compiles offline into a KFP v2 / Vertex spec.

Compiles in-process (TF/TFX imports are shared with the rest of the suite; the
compilation itself takes well under a second) with remote gs:// paths that do
not exist here, and checks the spec against the pipeline object it came from.
"""
import json
import pathlib

import pytest

IMAGE = 'us-docker.pkg.dev/example/pets/pet-segmentation:test'
BEAM_ARGS = ['--runner=DataflowRunner', '--project=example-project',
             '--setup_file=/pipeline/setup.py']
DATA_ROOT = 'gs://example-bucket/pets'
OUTPUT_DIR = 'gs://example-bucket/runs/pets'
REPO = pathlib.Path(__file__).resolve().parents[1]
# KFP v2 splits TFX's latest-blessed-model resolver into two resolver tasks.
RESOLVER_SUFFIXES = ('-model-blessing-resolver', '-model-resolver')


def _argv(output_file, *extra):
  return (['--image', IMAGE, '--data-root', DATA_ROOT, '--output-dir', OUTPUT_DIR,
           '--output-file', str(output_file), '--epochs', '3',
           '--threshold', 'iou_pet=0.4']
          + [f'--beam-arg={a}' for a in BEAM_ARGS] + list(extra))


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  """Compiles through the CLI; returns the spec and the pipeline it describes."""
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp('kfp') / 'pipeline.json'
  argv = _argv(out)
  assert kubeflow_v2_runner.main(argv) == 0
  # The same pipeline object the CLI compiled, to read its node ids from.
  kfp, config, _ = kubeflow_v2_runner.parse_config(argv)
  pipeline = kubeflow_v2_runner.create_kfp_pipeline(config, kfp)
  job = json.loads(out.read_text())
  return {'job': job, 'spec': job['pipelineSpec'], 'text': out.read_text(),
          'pipeline': pipeline, 'config': config}


def _tasks_of(spec, node_id):
  tasks = spec['root']['dag']['tasks']
  return [t for t in tasks
          if t == node_id or t in (node_id + s for s in RESOLVER_SUFFIXES)]


def _executor(spec, task):
  label = spec['components'][task]['executorLabel']
  return spec['deploymentSpec']['executors'][label]


def _param(spec, task, name):
  return (spec['root']['dag']['tasks'][task]['inputs']['parameters'][name]
          ['runtimeValue']['constantValue'])


def test_every_node_is_a_task_with_an_executor(compiled):
  spec, pipeline = compiled['spec'], compiled['pipeline']
  node_ids = [node.id for node in pipeline.components]
  assert {'PetExampleGen', 'Transform', 'Trainer', 'Evaluator',
          'Pusher'} <= set(node_ids)
  tasks = spec['root']['dag']['tasks']
  covered = set()
  for node_id in node_ids:
    found = _tasks_of(spec, node_id)
    assert found, f'{node_id} is not in the spec (tasks: {sorted(tasks)})'
    for task in found:
      assert _executor(spec, task)
    covered.update(found)
  assert covered == set(tasks)  # and nothing else


def test_every_container_uses_the_image(compiled):
  spec, pipeline = compiled['spec'], compiled['pipeline']
  from tfx.dsl.components.common import resolver  # pylint: disable=g-import-not-at-top
  containers = {}
  for node in pipeline.components:
    for task in _tasks_of(spec, node.id):
      executor = _executor(spec, task)
      if isinstance(node, resolver.Resolver):
        assert 'resolver' in executor, task
      else:
        containers[task] = executor['container']
  assert containers and {c['image'] for c in containers.values()} == {IMAGE}
  # The custom executors: ExampleGen's Beam PTransform, the data gate, ...
  assert (containers['PetExampleGen']['args'][:2] ==
          ['--executor_class_path', 'components.example_gen.executor.Executor'])
  assert any(a.startswith('components.data_gate.')
             for a in containers['DataValidationGate']['args'])


def test_beam_args_reach_the_beam_components(compiled):
  spec, pipeline = compiled['spec'], compiled['pipeline']
  from tfx.dsl.components.base import executor_spec  # pylint: disable=g-import-not-at-top
  beam_nodes = [n.id for n in pipeline.components
                if isinstance(getattr(n, 'executor_spec', None),
                              executor_spec.BeamExecutorSpec)]
  assert {'PetExampleGen', 'StatisticsGen', 'Transform',
          'Evaluator'} <= set(beam_nodes)
  for node_id in beam_nodes:
    args = _executor(spec, node_id)['container']['args']
    assert args[-len(BEAM_ARGS):] == BEAM_ARGS, node_id
  # The ExampleGen driver (span resolution before the cache check) gets them too.
  driver = _executor(spec, 'PetExampleGen')['container']['lifecycle']['preCacheCheck']
  assert driver['args'][-len(BEAM_ARGS):] == BEAM_ARGS


def test_module_code_paths_and_remote_locations(compiled):
  spec, job, config = compiled['spec'], compiled['job'], compiled['config']
  assert _param(spec, 'Transform', 'preprocessing_fn') == {
      'stringValue': 'components.transform.module.preprocessing_fn'}
  assert _param(spec, 'Trainer', 'run_fn') == {
      'stringValue': 'components.trainer.module.run_fn'}
  trainer_config = json.loads(_param(spec, 'Trainer', 'custom_config')['stringValue'])
  assert trainer_config['training']['epochs'] == 3
  assert _param(spec, 'PetExampleGen', 'input_base') == {'stringValue': DATA_ROOT}
  assert _param(spec, 'ImportSchemaGen', 'schema_file') == {
      'stringValue': '/pipeline/schemas/schema.pbtxt'}
  push = json.loads(_param(spec, 'Pusher', 'push_destination')['stringValue'])
  assert push['filesystem']['base_directory'] == OUTPUT_DIR + '/serving_model'
  assert job['runtimeConfig']['gcsOutputDirectory'] == OUTPUT_DIR + '/tfx'
  assert spec['pipelineInfo']['name'] == config.pipeline_name == 'pet-segmentation'
  # Nothing of this machine leaks into the spec: no checkout path, no SQLite.
  assert str(REPO) not in compiled['text']
  assert 'metadata.db' not in compiled['text']
  assert compiled['pipeline'].metadata_connection_config is None


def test_pipeline_root_override_and_no_cache(tmp_path):
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'spec.json'
  assert kubeflow_v2_runner.main(
      _argv(out, '--pipeline-root', 'gs://other-bucket/root', '--no-cache')) == 0
  job = json.loads(out.read_text())
  assert job['runtimeConfig']['gcsOutputDirectory'] == 'gs://other-bucket/root'
  tasks = job['pipelineSpec']['root']['dag']['tasks'].values()
  assert not any(t.get('cachingOptions', {}).get('enableCache') for t in tasks)


def test_yaml_output(tmp_path):
  import yaml  # pylint: disable=g-import-not-at-top
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'spec.yaml'
  assert kubeflow_v2_runner.main(_argv(out)) == 0
  spec = yaml.safe_load(out.read_text())  # the bare PipelineSpec
  assert spec['pipelineInfo']['name'] == 'pet-segmentation'
  assert 'Trainer' in spec['root']['dag']['tasks']


@pytest.mark.parametrize('extra, message', [
    (['--spans', '--train-spans', '2'], 'span-range'),
    (['--pipeline-name', 'Pet_Segmentation'], 'pipeline-name'),
    (['--threshold', 'nonsense=1'], 'unknown metric'),
    (['--vertex-training-workers', '2'], 'needs --vertex-project'),
    (['--vertex-training-workers', '-1'], '--vertex-training-workers'),
])
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'never.json'
  assert kubeflow_v2_runner.main(_argv(out, *extra)) == 2
  assert message in capsys.readouterr().err
  assert not out.exists()


def test_image_is_required(capsys):
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  assert kubeflow_v2_runner.main(
      ['--data-root', DATA_ROOT, '--output-dir', OUTPUT_DIR]) == 2
  assert '--image' in capsys.readouterr().err


def test_vertex_training_compiles_tfx_vertex_trainer_with_worker_pools(tmp_path):
  """Issue 13: --vertex-training-workers N runs the Trainer as TFX's Vertex AI
  Training extension: a CustomJob with a chief pool and a worker pool."""
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'vertex.json'
  assert kubeflow_v2_runner.main(_argv(
      out, '--vertex-training-workers', '3', '--vertex-project', 'example-project',
      '--vertex-region', 'europe-west4', '--vertex-machine-type', 'n1-highmem-8',
      '--vertex-accelerator-type', 'NVIDIA_TESLA_T4',
      '--vertex-accelerator-count', '2')) == 0
  spec = json.loads(out.read_text())['pipelineSpec']
  executor = _executor(spec, 'Trainer')['container']
  # The Vertex extension's executor submits the job; the step only waits.
  assert ('tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor'
          in ' '.join(executor['args']))
  config = json.loads(_param(spec, 'Trainer', 'custom_config')['stringValue'])
  extension = tfx.extensions.google_cloud_ai_platform
  assert config[extension.ENABLE_VERTEX_KEY] is True
  assert config[extension.VERTEX_REGION_KEY] == 'europe-west4'
  job = config[extension.TRAINING_ARGS_KEY]
  assert job['project'] == 'example-project'
  machine = {'machine_type': 'n1-highmem-8', 'accelerator_type': 'NVIDIA_TESLA_T4',
             'accelerator_count': 2}
  container = {'image_uri': IMAGE}
  assert job['worker_pool_specs'] == [
      {'machine_spec': machine, 'replica_count': 1, 'container_spec': container},
      {'machine_spec': machine, 'replica_count': 2, 'container_spec': container}]
  assert config['training']['epochs'] == 3  # run_fn's own settings ride along
  assert _param(spec, 'Trainer', 'run_fn') == {
      'stringValue': 'components.trainer.module.run_fn'}


def test_in_container_trainer_by_default(compiled):
  executor = _executor(compiled['spec'], 'Trainer')['container']
  assert 'google_cloud_ai_platform' not in ' '.join(executor['args'])
  config = json.loads(_param(compiled['spec'], 'Trainer', 'custom_config')['stringValue'])
  assert set(config) == {'training'}


def test_guards_compile_local_probe_by_default(compiled):
  """Issue 15: both guards are in the spec: the drift check (a stock resolver
  strategy, the only kind KFP v2 compiles) and the fresh-process infra probe,
  whose InfraBlessing the Pusher consumes."""
  spec = compiled['spec']
  tasks = spec['root']['dag']['tasks']
  assert {'DriftValidator', 'InfraValidator', 'DataValidationGate'} <= set(tasks)
  assert any(t.startswith('TrainedStatisticsResolver') for t in tasks)
  args = ' '.join(_executor(spec, 'InfraValidator')['container']['args'])
  assert 'components.infra_validator' in args
  pusher_inputs = tasks['Pusher']['inputs']['artifacts']
  assert pusher_inputs['infra_blessing']['taskOutputArtifact']['producerTask'] == (
      'InfraValidator')


def test_tfx_infra_validator_with_a_serving_image(tmp_path):
  """--infra-serving-image: TFX's own InfraValidator (TF Serving on the
  cluster) replaces the probe; the Pusher takes its blessing."""
  import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'serving.json'
  assert kubeflow_v2_runner.main(_argv(
      out, '--infra-serving-image', 'tensorflow/serving:2.16.1',
      '--infra-examples', '4')) == 0
  spec = json.loads(out.read_text())['pipelineSpec']
  args = ' '.join(_executor(spec, 'InfraValidator')['container']['args'])
  assert 'tfx.components.infra_validator.executor.Executor' in args
  serving = json.loads(_param(spec, 'InfraValidator', 'serving_spec')['stringValue'])
  assert serving['tensorflow_serving'] == {'image_name': 'tensorflow/serving',
                                           'tags': ['2.16.1']}
  request = json.loads(_param(spec, 'InfraValidator', 'request_spec')['stringValue'])
  assert request['num_examples'] == 4 and request['split_name'] == 'eval'
  pusher = spec['root']['dag']['tasks']['Pusher']['inputs']['artifacts']
  assert pusher['infra_blessing']['taskOutputArtifact'] == {
      'producerTask': 'InfraValidator', 'outputArtifactKey': 'blessing'}
