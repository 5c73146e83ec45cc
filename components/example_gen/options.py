"""The ExampleGen's settings (what its executor reads from custom_config)."""
import dataclasses
from typing import Any, Dict

from components.options import at_least, setting, within

INGESTION = 'ingestion'


@dataclasses.dataclass
class ExampleGenOptions:
  """What the PetExampleGen's executor needs besides the data root."""
  min_valid_fraction: float = setting(
      0.5, 'fail when fewer listed image/trimap pairs are valid', INGESTION,
      check=within(0.0, 1.0))
  # Read from the image header before any pixel is decoded. Pillow's own
  # decompression-bomb guard (2 x PIL.Image.MAX_IMAGE_PIXELS, ~179 Mpx) still
  # refuses larger images whatever this says.
  max_image_pixels: int = setting(
      50_000_000, 'quarantine images with more pixels than this (width x '
      'height; the real dataset tops out near 0.25 Mpx)', INGESTION,
      metavar='N', check=at_least(1))

  def to_executor_options(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)
