"""Fingerprints of the code a component runs, for its cache key.

Module code referenced by dotted path (TFX template style) is not part of TFX's
cache key, unlike a `module_file`: without this, an edited preprocessing_fn or
metric would silently reuse results computed by the old code. Each room lists
the files it runs (`CODE`); the wiring puts their fingerprint into the
component's execution properties, which the cache key includes.
"""
import hashlib
import pathlib
from typing import Iterable

COMPONENTS_DIR = pathlib.Path(__file__).resolve().parent
EXEC_PROPERTY = 'code_fingerprint'


def source_files(code: Iterable[str],
                 root: pathlib.Path = COMPONENTS_DIR) -> list:
  """The .py files named by `code`: files, or rooms (folders) under `root`."""
  paths = set()
  for name in code:
    path = root / name
    paths.update(path.rglob('*.py') if path.is_dir() else [path])
  return sorted(paths)


def code_fingerprint(code: Iterable[str],
                     root: pathlib.Path = COMPONENTS_DIR) -> str:
  """A short hash of the names and contents of the files `code` names."""
  digest = hashlib.sha256()
  for path in source_files(code, root):
    digest.update(path.relative_to(root).as_posix().encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()[:16]
