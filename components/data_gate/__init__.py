"""Data gate room: stops the run before Transform when ExampleValidator found
anomalies or the DriftValidator found drift from the last span trained on."""
CODE = ('features.py', 'data_gate')
