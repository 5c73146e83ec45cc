"""Trainer room: `run_fn`, the U-Net, the serving export and the training options."""
RUN_FN = 'components.trainer.module.run_fn'
# What the Trainer runs: its room, and the Transform helpers the export reuses.
CODE = ('features.py', 'trainer', 'transform')
