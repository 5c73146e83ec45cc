"""Trainer room: `run_fn`, the U-Net, the serving export and the training options."""
RUN_FN = 'components.trainer.module.run_fn'
TUNER_FN = 'components.trainer.tuner.tuner_fn'
# The Tuner's custom_config key of its number of trials.
TUNER_TRIALS_KEY = 'tune_trials'
# What the Trainer runs: its room, and the Transform helpers the export reuses.
CODE = ('features.py', 'options.py', 'trainer', 'transform')
# The Trainer's custom_config key holding its settings (TrainerOptions).
CUSTOM_CONFIG_KEY = 'training'
