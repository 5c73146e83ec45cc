"""One list-file entry -> one serialised tf.Example, without importing TensorFlow.

This is the ExampleGen's per-record work, run by its Beam DoFn in every SDK
worker. A worker imports the module of each DoFn it unpickles, so this module
(and everything it imports) stays free of TensorFlow and TFX: a multi-process
worker then starts with Beam, NumPy and PIL only instead of paying ~14 CPU s
and ~0.6 GB to import TensorFlow and TFX (benchmarks/ingest_benchmark.py).

Every name from a list file passes `check_name` before it becomes part of a
path (`pair_paths`): nothing outside `images/` and `annotations/trimaps/` is read.

The tf.Example wire format is small and stable (example.proto, feature.proto),
so it is encoded here directly; tests check the bytes against
`tf.train.Example.SerializeToString(deterministic=True)`.
"""
import json
import os
import re
import struct
from typing import Dict, Iterator, List, Optional, Tuple, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components import features
from components.example_gen import descriptors
from components.example_gen import validation
from components.example_gen.options import ExampleGenOptions

REJECTED_TAG = 'rejected'
METRICS_NAMESPACE = 'pet_example_gen'
DEFAULT_MAX_IMAGE_PIXELS = ExampleGenOptions.max_image_pixels
IMAGES_DIR = 'images'
TRIMAPS_DIR = os.path.join('annotations', 'trimaps')
BOM = '\ufeff'
MAX_NAME_LENGTH = 200  # file systems allow 255 bytes; '.jpg' and margin
# Every official name is a breed (letters and '_') and a number.
NAME_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,%d}' % (MAX_NAME_LENGTH - 1))


# --- tf.Example wire format -------------------------------------------------------

def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # int64 is encoded as its two's complement uint64.
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2): tag, length, payload."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value: Union[bytes, int, float]) -> bytes:
  if isinstance(value, bytes):  # Feature.bytes_list (1) -> BytesList.value (1).
    return _field(1, _field(1, value))
  if isinstance(value, float):  # Feature.float_list (2) -> FloatList.value (1),
    return _field(2, _field(1, struct.pack('<f', value)))  # packed float32.
  # Feature.int64_list (3) -> Int64List.value (1), packed as TF writes it.
  return _field(3, _field(1, _varint(value)))


def encode_example(feature_values: Dict[str, Union[bytes, int, float]]) -> bytes:
  """Serialises a tf.Example of single-valued bytes/int64/float features.

  Keys are written in sorted order, exactly as TensorFlow's deterministic
  serialisation of the Features map does.

  Args:
    feature_values: feature name -> bytes, int or float (stored as float32).

  Returns:
    The tf.Example's wire-format bytes.
  """
  entries = b''.join(
      _field(1, _field(1, key.encode()) + _field(2, _feature(value)))
      for key, value in sorted(feature_values.items()))
  return _field(1, entries)  # Example.features (1) -> Features.feature (1)*.


# --- one list entry -----------------------------------------------------------------

def parse_list_line(line: str) -> Optional[List[str]]:
  """Returns the columns of a list-file entry, or None for comments and blanks."""
  # Beam's ReadFromText hands a UTF-8 byte-order mark through on the first
  # line, and str.strip() does not count it as whitespace.
  line = line.lstrip(BOM).strip()
  if not line or line.startswith('#'):
    return None
  return line.split()


def check_name(name: str) -> str:
  """Returns `name` if it may name an image/trimap pair; raises BadInput otherwise.

  The one place that decides what a list entry may name: the dataset's own
  names (`Abyssinian_100`, `great_pyrenees_12`), so that no entry can make
  ingestion read outside `images/` and `annotations/trimaps/`.

  Args:
    name: an entry's first column.

  Returns:
    `name`, unchanged.

  Raises:
    BadInput: with the reason, for any other name.
  """
  shown = repr(name if len(name) <= 80 else name[:80] + '...')
  if not name:
    problem = 'names may not be empty'
  elif '\0' in name:
    problem = 'names may not contain NUL characters'
  elif '/' in name or '\\' in name or '..' in name:
    problem = "names may not contain path separators or '..'"
  elif not NAME_PATTERN.fullmatch(name):
    problem = (f'names are ASCII letters, digits, "_" and "-", at most '
               f'{MAX_NAME_LENGTH} characters, starting with a letter or digit')
  else:
    return name
  raise validation.BadInput(f'unsafe name {shown}: {problem}')


def layout_root(list_file: str) -> str:
  """'<root>/annotations/trainval.txt' -> '<root>': the folder of images/."""
  return os.path.dirname(os.path.dirname(list_file))


def pair_paths(data_root: str, name: str) -> Tuple[str, str]:
  """(image path, trimap path) of a listed name, after `check_name`."""
  check_name(name)
  return (os.path.join(data_root, IMAGES_DIR, name + '.jpg'),
          os.path.join(data_root, TRIMAPS_DIR, name + '.png'))


def read_file(path: str) -> bytes:
  """Reads a file through Beam's FileSystems (local disk, GCS, HDFS alike)."""
  if not FileSystems.exists(path):
    raise validation.BadInput(f'missing file {path}')
  try:
    with FileSystems.open(
        path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      return f.read()
  except OSError as e:  # e.g. a folder or an unreadable file under that name
    raise validation.BadInput(f'cannot read {path}: {e}') from e


def _check_columns(columns: List[str]) -> None:
  """Four columns, the last three non-negative ASCII integers that fit an int64."""
  ids = columns[1:]
  if (len(columns) != 4 or
      # len first: int() of a long digit string is slow, then refused (3.10.7+).
      not all(c.isascii() and c.isdigit() and len(c) <= 19 and int(c) < 2**63
              for c in ids)):
    raise validation.BadInput(
        f'malformed list entry {" ".join(columns)[:200]!r}: expected '
        '"NAME CLASS-ID SPECIES BREED-ID" (ids below 2**63)')


def make_record(data_root: str, columns: List[str],
                max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS) -> bytes:
  """Builds one serialised tf.Example from a list entry `NAME CLASS-ID SPECIES BREED-ID`.

  Args:
    data_root: the folder holding images/ and annotations/trimaps/.
    columns: the entry's columns (`parse_list_line`).
    max_image_pixels: quarantine larger images (width x height).

  Returns:
    The tf.Example's bytes: the raw features of components/features.py, image
    normalised to RGB baseline JPEG, trimap to a one-channel PNG, the breed
    name and the drift descriptors.

  Raises:
    BadInput: with the reason, for any entry that cannot become a valid example.
  """
  image_path, trimap_path = pair_paths(data_root, columns[0])
  _check_columns(columns)
  name = columns[0]
  class_id, species, breed_id = (int(c) for c in columns[1:])
  image, height, width, _ = validation.normalise_image(
      read_file(image_path), max_image_pixels)
  mask = validation.validate_trimap(read_file(trimap_path), height, width)
  return encode_example({
      **descriptors.describe(image, mask, height, width),
      features.BREED_KEY: descriptors.breed_name(name).encode(),
      features.IMAGE_KEY: image,
      features.MASK_KEY: mask,
      features.FILE_NAME_KEY: name.encode(),
      features.CLASS_ID_KEY: class_id,
      features.SPECIES_KEY: species,
      features.BREED_ID_KEY: breed_id,
      features.HEIGHT_KEY: height,
      features.WIDTH_KEY: width,
  })


def quarantine_record(list_file: str, columns: List[str], reason: str) -> str:
  """One quarantine line (JSON): where the entry came from and why it was rejected."""
  return json.dumps({'list_file': list_file, 'entry': ' '.join(columns),
                     'file_name': columns[0], 'reason': reason})


def counts_record(num_examples: int, num_rejected: int, list_file: str) -> str:
  """The per-list counts line (JSON) that lets listed = written + quarantined be checked."""
  return json.dumps({'list_file': list_file, 'examples': num_examples,
                     'rejected': num_rejected})


class ToRecordFn(beam.DoFn):
  """List-file line -> tf.Example bytes, or a quarantine line on the 'rejected' tag."""

  def __init__(self, data_root: str, list_file: str,
               max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS):
    self._data_root = data_root
    self._list_file = list_file
    self._max_image_pixels = max_image_pixels

  def process(self, line: Union[str, bytes]
              ) -> Iterator[Union[bytes, beam.pvalue.TaggedOutput]]:
    if isinstance(line, bytes):
      # The list is read as bytes so that a file that is not valid UTF-8
      # quarantines its bad entries (as unsafe names) instead of failing the run.
      line = line.decode('utf-8', errors='replace')
    columns = parse_list_line(line)
    if columns is None:
      return
    try:
      yield make_record(self._data_root, columns, self._max_image_pixels)
    except validation.BadInput as e:
      beam.metrics.Metrics.counter(METRICS_NAMESPACE, 'rejected').inc()
      yield beam.pvalue.TaggedOutput(
          REJECTED_TAG, quarantine_record(self._list_file, columns, str(e)))
