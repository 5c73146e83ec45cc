"""The command line both runners share, derived from the settings' definitions.

Every field made with `components.options.setting` becomes a flag (booleans
get `--x/--no-x`, dicts `--flag KEY=VALUE` repeatable, lists repeatable) and a
key of a `--config` YAML file; flags override the file, the file overrides
the defaults. `--print-config` prints the effective settings (secrets
redacted). Bad usage is one line on stderr and exit 2 (`UsageError`).

  python -m pipeline.cli --markdown   prints the README's flag table
"""
import argparse
import dataclasses
import sys
import typing
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

from components.options import flag_of, meta_of
from pipeline import metadata as metadata_lib
from pipeline import settings

EXIT_USAGE = 2
REDACTED = '***'


class UsageError(ValueError):
  """Arguments or a config file the run cannot use; str() is one line."""


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage error is one line (`error: ...`), exit 2."""

  def error(self, message: str):
    raise UsageError(message)


# --- walking the definitions ---------------------------------------------------

def setting_fields(cls) -> Iterator[Tuple[Tuple[str, ...], dataclasses.Field, Any]]:
  """(path, field, type) of every setting in `cls`, nested dataclasses included."""
  hints = typing.get_type_hints(cls)
  for field in dataclasses.fields(cls):
    kind = hints[field.name]
    if dataclasses.is_dataclass(kind):
      for path, inner, inner_kind in setting_fields(kind):
        yield (field.name,) + path, inner, inner_kind
    elif meta_of(field):
      yield (field.name,), field, kind


def _default(field: dataclasses.Field) -> Any:
  if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
    return field.default_factory()  # type: ignore[misc]
  return field.default


def _base(kind) -> Any:
  """Optional[X] -> X; other types unchanged."""
  args = [a for a in typing.get_args(kind) if a is not type(None)]
  return args[0] if typing.get_origin(kind) is typing.Union else kind


# --- the parser ----------------------------------------------------------------

def build_parser(classes: Sequence[type], description: str) -> _Parser:
  """An argparse parser for every setting of `classes` (defaults suppressed,
  so that what was given can be told from what was not)."""
  parser = _Parser(description=description, allow_abbrev=False,
                   argument_default=argparse.SUPPRESS)
  parser.add_argument('--config', metavar='FILE',
                      help='YAML file of settings (keys as in --print-config); '
                           'flags override it')
  parser.add_argument('--print-config', action='store_true',
                      help='print the effective settings and exit')
  groups: Dict[str, argparse._ArgumentGroup] = {}
  for cls in classes:
    for _, field, kind in setting_fields(cls):
      meta, flag = meta_of(field), flag_of(field)
      if not flag:
        continue
      group = groups.setdefault(meta.group, parser.add_argument_group(meta.group))
      _add_flag(group, field, flag, _base(kind), meta)
  return parser


def _add_flag(group, field, flag: str, kind, meta) -> None:
  default = _default(field)
  shown = '' if default in (None, '', [], {}) else f' (default {default})'
  env = f' [{meta.env}]' if meta.env else ''
  common = dict(dest=field.name, help=meta.help + shown + env)
  if kind is bool:
    group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    if meta.off_flag:
      group.add_argument(meta.off_flag, action='store_false', dest=field.name,
                         help=f'same as --no-{flag[2:]}')
  elif typing.get_origin(kind) in (dict, list):
    group.add_argument(flag, action='append', metavar=meta.item or meta.metavar,
                       **common)
  else:
    group.add_argument(flag, type=kind, metavar=meta.metavar, **common)


# --- values: defaults < --config file < flags ------------------------------------

def _coerce(name: str, kind, value: Any) -> Any:
  """A config-file or flag value as the setting's type, or UsageError."""
  base = _base(kind)
  if value is None and base is not kind:
    return None
  origin = typing.get_origin(base)
  if origin is dict:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
      value = dict(_key_value(name, item) for item in value)  # KEY=VALUE flags
    if not isinstance(value, dict):
      raise UsageError(f'{name}: expected a mapping METRIC: NUMBER, got {value!r}')
    return {str(k): _coerce(f'{name}.{k}', float, v) for k, v in value.items()}
  if origin is list:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
      raise UsageError(f'{name}: expected a list of strings, got {value!r}')
    return list(value)
  if base is bool:
    ok = isinstance(value, bool)
  elif base in (int, float):
    numbers = (int, float) if base is float else (int,)
    ok = isinstance(value, numbers) and not isinstance(value, bool)
  else:
    ok = isinstance(value, base)
  if not ok:
    raise UsageError(f'{name}: expected {base.__name__}, got {value!r}')
  return base(value)


def _key_value(name: str, item: str) -> Tuple[str, float]:
  """'iou_pet=0.5' -> ('iou_pet', 0.5)."""
  key, sep, value = item.partition('=')
  try:
    number = float(value) if sep else None
  except ValueError:
    number = None
  if number is None:
    raise UsageError(f'{name} {item!r}: expected METRIC=NUMBER')
  return key.strip(), number


def load_config_file(path: str) -> Dict[str, Any]:
  """The settings of a YAML file: a mapping of setting names to values."""
  try:
    with open(path, encoding='utf-8') as f:
      values = yaml.safe_load(f)
  except OSError as e:
    raise UsageError(f'--config {path}: {e.strerror}') from None
  except yaml.YAMLError as e:
    raise UsageError(f'--config {path}: not valid YAML: '
                     f'{str(e).splitlines()[0]}') from None
  if values is None:
    return {}
  if not isinstance(values, dict):
    raise UsageError(f'--config {path}: expected a mapping of settings')
  return {str(k).replace('-', '_'): v for k, v in values.items()}


def parse(argv: Optional[Sequence[str]], classes: Sequence[type],
          description: str) -> Tuple[List[Any], argparse.Namespace]:
  """Parses flags and --config into one instance of each class in `classes`.

  Returns:
    (instances, namespace); the namespace holds `print_config`.

  Raises:
    UsageError: an unknown flag or key, a wrong type, a bad value.
  """
  args = build_parser(classes, description).parse_args(argv)
  fields = {f.name: (path, f, kind) for cls in classes
            for path, f, kind in setting_fields(cls)}
  values: Dict[str, Any] = {}
  if getattr(args, 'config', None):
    from_file = load_config_file(args.config)
    unknown = sorted(set(from_file) - set(fields))
    if unknown:
      raise UsageError(f'--config {args.config}: unknown setting(s) {unknown}')
    for name, value in from_file.items():
      values[name] = _coerce(name, fields[name][2], value)
  for name, (_, field, kind) in fields.items():
    if hasattr(args, name):
      values[name] = _coerce(flag_of(field) or name, kind, getattr(args, name))
  instances = [_build(cls, values) for cls in classes]
  args.print_config = getattr(args, 'print_config', False)
  return instances, args


def _build(cls, values: Dict[str, Any]) -> Any:
  """An instance of `cls` from flat setting values (nested classes recursively)."""
  hints = typing.get_type_hints(cls)
  kwargs = {}
  for field in dataclasses.fields(cls):
    kind = hints[field.name]
    if kind is metadata_lib.MetadataConfig:
      kwargs[field.name] = _metadata(values)
    elif dataclasses.is_dataclass(kind):
      kwargs[field.name] = _build(kind, values)
    elif field.name in values and meta_of(field):
      kwargs[field.name] = values[field.name]
  return cls(**kwargs)


def _metadata(values: Dict[str, Any]) -> metadata_lib.MetadataConfig:
  """Given MySQL settings, else their environment variables (`resolve`).

  A value equal to its default counts as not given (a --print-config output
  used as a --config file lists every default). The password is read from
  the environment only: a config file in version control must not hold it.
  """
  if values.get('mysql_password') not in (None, '', REDACTED):
    raise UsageError(f'mysql_password: give it in {metadata_lib.ENV_PASSWORD}, '
                     'never in a file or on the command line')
  defaults = metadata_lib.MetadataConfig()
  given = {name: values.get(name) for name in
           ('mysql_host', 'mysql_port', 'mysql_database', 'mysql_user')}
  given = {k: (None if v == getattr(defaults, k) else v) for k, v in given.items()}
  try:
    return metadata_lib.resolve(
        host=given['mysql_host'], port=given['mysql_port'],
        database=given['mysql_database'], user=given['mysql_user'])
  except ValueError as e:
    raise UsageError(str(e)) from None


def one_line(error: BaseException) -> str:
  """The innermost message of an exception, on one line."""
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[-1] if text else ""}'.strip()


# --- printing -----------------------------------------------------------------------

def effective_settings(*instances: Any) -> Dict[str, Any]:
  """{setting name: value} of `instances`, secrets redacted."""
  out: Dict[str, Any] = {}
  for instance in instances:
    for path, field, _ in setting_fields(type(instance)):
      value = instance
      for name in path:
        value = getattr(value, name)
      out[field.name] = REDACTED if meta_of(field).secret and value else value
  return out


def format_settings(*instances: Any) -> str:
  """The effective settings as a --config YAML file."""
  return yaml.safe_dump(effective_settings(*instances), sort_keys=False,
                        default_flow_style=False)


def markdown_table(classes: Sequence[type]) -> str:
  """The README's flag table: one row a setting, grouped as --help groups them."""
  rows, group = ['| flag | config key | default | meaning |',
                 '|---|---|---|---|'], None
  for cls in classes:
    for _, field, kind in setting_fields(cls):
      meta = meta_of(field)
      if meta.group != group:
        group = meta.group
        rows.append(f'| **{group}** | | | |')
      flag = flag_of(field)
      if flag and _base(kind) is bool:
        flag = f'`{flag}` / `--no-{flag[2:]}`' + (
            f' / `{meta.off_flag}`' if meta.off_flag else '')
      elif flag:
        flag = f'`{flag} {meta.item or meta.metavar or field.name.upper()}`'
      else:
        flag = '(none)'
      default = _default(field)
      shown = '' if default in (None, '', [], {}) else f'`{default}`'
      env = f' (env `{meta.env}`)' if meta.env else ''
      rows.append(f'| {flag} | `{field.name}` | {shown} | {meta.help}{env} |')
  return '\n'.join(rows)


LOCAL_CLASSES = (settings.PipelineConfig,)
KUBEFLOW_CLASSES = (settings.KubeflowOptions, settings.PipelineConfig)


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv != ['--markdown']:
    print('usage: python -m pipeline.cli --markdown', file=sys.stderr)
    return EXIT_USAGE
  print(markdown_table(KUBEFLOW_CLASSES))
  return 0


if __name__ == '__main__':
  sys.exit(main())
