"""TFX component code for the pet-segmentation pipeline (one room per component)."""
