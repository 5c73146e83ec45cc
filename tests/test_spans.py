"""Span-aware ingestion: latest span by default, a chosen span, a rolling training window."""
import json

from ml_metadata import metadata_store
from tfx import v1 as tfx

from pipeline import settings as config_lib
from pipeline import pipeline as pipeline_lib
from tests import kit
from pipeline.tools import synthetic_pets
from components import transform as transform_room
from components.example_gen import component as example_gen_component

# (trainval, test) entries per span: different, so counts tell which was read.
SPAN_SIZES = {1: (5, 2), 2: (7, 3)}


def _add_span(root, span):
  train, test = SPAN_SIZES[span]
  synthetic_pets.generate(root / f'span-{span}', num_trainval=train,
                          num_test=test, seed=span, min_size=128, max_size=140)


def _run(nodes, out):
  connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(out / 'metadata.db'))
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='spans_test', pipeline_root=str(out / 'tfx'),
      components=nodes, enable_cache=True, metadata_connection_config=connection))
  return metadata_store.MetadataStore(connection)


def _ingested(store):
  """(span, train count, eval count) of the latest run's ExampleGen output."""
  run = kit.read_run(store, pipeline_name='spans_test')
  examples = run.output(pipeline_lib.EXAMPLE_GEN, 'examples')
  counts = json.loads(
      examples.custom_properties['split_counts'].string_value)
  return (examples.custom_properties['span'].int_value,
          counts['train']['examples'], counts['eval']['examples'])


def _example_gen(root, span=None):
  return example_gen_component.create_example_gen(
      str(root), spans=True, span=span).with_id(pipeline_lib.EXAMPLE_GEN)


def test_latest_span_is_read_and_a_new_span_changes_counts(tmp_path):
  root = tmp_path / 'data'
  _add_span(root, 1)
  store = _run([_example_gen(root)], tmp_path / 'out')
  assert _ingested(store) == (1, 5, 2)
  _add_span(root, 2)
  store = _run([_example_gen(root)], tmp_path / 'out')
  assert _ingested(store) == (2, 7, 3)
  # An explicit span reads that one even though a newer exists.
  store = _run([_example_gen(root, span=1)], tmp_path / 'out_pinned')
  assert _ingested(store) == (1, 5, 2)


def test_rolling_window_trains_on_the_newest_spans(tmp_path):
  root, out = tmp_path / 'data', tmp_path / 'out'
  config = config_lib.PipelineConfig(data_root=str(root), output_dir=str(out),
                                     spans=True, train_spans=2)

  def nodes():
    example_gen = _example_gen(root)
    extra, training = pipeline_lib.training_examples(config, example_gen)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=pipeline_lib.SCHEMA_PATH)
    transform = tfx.components.Transform(
        examples=training, schema=schema_gen.outputs['schema'],
        preprocessing_fn=transform_room.PREPROCESSING_FN)
    return [example_gen, *extra, schema_gen, transform]

  _add_span(root, 1)
  _run(nodes(), out)
  _add_span(root, 2)
  store = _run(nodes(), out)
  run = kit.read_run(store, pipeline_name='spans_test')
  consumed = run.nodes['Transform'].inputs['examples']
  assert sorted(a.custom_properties['span'].int_value for a in consumed) == [1, 2]
  # One transformed Examples artifact per input span.
  assert len(run.nodes['Transform'].outputs['transformed_examples']) == 2


def test_span_flags_need_spans():
  config = config_lib.PipelineConfig(data_root='x', output_dir='y', train_spans=2)
  assert config_lib.validate(config) == '--span and --train-spans need --spans'
