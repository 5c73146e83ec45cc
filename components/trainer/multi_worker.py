"""Keras 3 `fit` under MultiWorkerMirroredStrategy: two upstream bugs, worked around.

Keras 3.12's TensorFlow trainer cannot `fit` with MultiWorkerMirroredStrategy
in multi-worker mode (keras-team/keras#20585, tensorflow/tensorflow#72388):
  1. before the first step it reduces a *data batch* across workers, eagerly,
     which the collective strategy rejects ("Attempt to convert a value
     (PerReplica ...) to a Tensor");
  2. it then averages each step's logs with `strategy.reduce('MEAN', v,
     axis=0)`, and the logs are scalars ("Invalid reduction dimension 0").
`fitting` avoids the first by the trainer's own deferred-build path (the model
forgets its creation strategy; `fit` runs inside the strategy's scope, so
Keras finds it there) and replaces the second by a mean across replicas,
which is what Keras does for MirroredStrategy. Training itself (the gradient
all-reduce) is TensorFlow's, untouched. Single-worker runs are not affected.
"""
import contextlib

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_tf_trainer

_original_reduce_per_replica = keras_tf_trainer.reduce_per_replica


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
          strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def _reduce_per_replica(values, strategy, reduction):
  if in_multi_worker_mode(strategy) and reduction in ('auto', 'mean'):
    return tf.nest.map_structure(
        lambda v: strategy.reduce('MEAN', v, axis=None), values)
  return _original_reduce_per_replica(values, strategy, reduction)


@contextlib.contextmanager
def fitting(model, strategy: tf.distribute.Strategy):
  """Context for `model.fit` (and `evaluate`) under `strategy`; see the module doc."""
  if not in_multi_worker_mode(strategy):
    yield
    return
  keras_tf_trainer.reduce_per_replica = _reduce_per_replica
  model._distribute_strategy = None  # pylint: disable=protected-access
  with strategy.scope():
    yield
