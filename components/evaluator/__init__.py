"""Evaluator room: the TFMA EvalConfig and the per-pixel metrics TFMA loads."""
METRICS_MODULE = 'components.evaluator.metrics'
# What TFMA runs besides the model itself: the metric classes.
CODE = ('features.py', 'options.py', 'evaluator')
