"""Pipeline assembly and data helpers for the pet-segmentation project."""
