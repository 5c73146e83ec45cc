"""Infra validator room: serves the model in a fresh process before the Pusher may push it."""
# What the component runs (its cache key's code fingerprint): probe.py among them.
CODE = ('features.py', 'options.py', 'infra_validator')
