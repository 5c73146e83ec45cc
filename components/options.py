"""Typed settings, each defined once with its help, group and check.

A setting is a dataclass field made by `setting(...)`: its name, type and
default are the field's; its help text, group, flag and check live in the
field's metadata. The command line (pipeline/cli.py), config files, the
Trainer's custom_config and the README's flag table are all derived from these
definitions, so a new knob is one field in one place.

Pure Python (no TensorFlow): the CLI refuses bad arguments before heavy imports.
"""
import dataclasses
import math
from typing import Any, Callable, Optional

Check = Callable[[Any], Optional[str]]  # value -> a reason it is bad, or None


@dataclasses.dataclass(frozen=True)
class Meta:
  """What a setting's field carries besides its name, type and default.

  Attributes:
    help: one line for --help and the README.
    group: the heading it is listed under.
    flag: its command-line flag; '' for none (config file or environment only).
    off_flag: for booleans, an extra flag that sets it False.
    metavar: argparse's metavar.
    check: value -> reason it is unusable, or None.
    env: an environment variable it falls back to.
    secret: never printed (--print-config, logs).
    item: for dict settings, the 'KEY=VALUE' form of one flag value.
  """
  help: str
  group: str
  flag: Optional[str] = None
  off_flag: Optional[str] = None
  metavar: Optional[str] = None
  check: Optional[Check] = None
  env: Optional[str] = None
  secret: bool = False
  item: Optional[str] = None


def setting(default: Any, help: str, group: str, **meta: Any) -> Any:  # pylint: disable=redefined-builtin
  """A dataclass field that is a setting (see `Meta` for `meta`)."""
  info = {'setting': Meta(help=help, group=group, **meta)}
  if isinstance(default, (list, dict)):
    return dataclasses.field(default_factory=lambda: type(default)(default),
                             metadata=info)
  return dataclasses.field(default=default, metadata=info)


def meta_of(field: dataclasses.Field) -> Optional[Meta]:
  return field.metadata.get('setting')


def flag_of(field: dataclasses.Field) -> str:
  """The field's flag: its own, else --name-with-dashes; '' when it has none."""
  meta = meta_of(field)
  if meta.flag is not None:
    return meta.flag
  return '--' + field.name.replace('_', '-')


# --- checks ------------------------------------------------------------------

def at_least(low: float) -> Check:
  return lambda v: None if v is None or v >= low else f'must be at least {low}'


def within(low: float, high: float) -> Check:
  def check(value):
    values = value.values() if isinstance(value, dict) else [value]
    for v in values:
      if v is not None and not (math.isfinite(v) and low <= v <= high):
        return f'must be a finite number within [{low}, {high}], got {v}'
    return None
  return check


def problems(options: Any) -> Optional[str]:
  """The first problem of a settings dataclass (nested ones included), or None.

  Per-field checks first (reported with the field's flag), then the object's
  own `cross_check()` for rules that involve several fields.
  """
  for field in dataclasses.fields(options):
    value = getattr(options, field.name)
    if dataclasses.is_dataclass(value):
      problem = problems(value)
      if problem:
        return problem
      continue
    meta = meta_of(field)
    if meta and meta.check:
      problem = meta.check(value)
      if problem:
        return f'{flag_of(field) or field.name}: {problem}'
  cross_check = getattr(options, 'cross_check', None)
  return cross_check() if cross_check else None
