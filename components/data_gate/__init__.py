"""Data gate room: stops the run before Transform when ExampleValidator found anomalies."""
CODE = ('data_gate',)
