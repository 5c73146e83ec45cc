"""Transform room: the tf.Transform `preprocessing_fn` and the decode helpers serving reuses."""
PREPROCESSING_FN = 'components.transform.module.preprocessing_fn'
# What the Transform component runs (its cache key's code fingerprint).
CODE = ('features.py', 'transform')
