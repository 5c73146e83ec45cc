"""Where ML Metadata lives: embedded SQLite (the default) or a shared MySQL/MariaDB.

SQLite is `<output-dir>/metadata.db`: nothing to set up, one person, one output
dir. A MySQL-compatible server lets several runs, machines and people share one
store: lineage, caching and the last blessed model (the Evaluator's baseline)
are then pipeline-wide, not per output directory.

MySQL is chosen by giving a host; each value comes from its flag, else from the
environment:

  --metadata-mysql-host HOST      MLMD_MYSQL_HOST       (selects MySQL)
  --metadata-mysql-port N         MLMD_MYSQL_PORT       (3306)
  --metadata-mysql-database NAME  MLMD_MYSQL_DATABASE   (mlmd; created if missing)
  --metadata-mysql-user NAME      MLMD_MYSQL_USER       (required)
  (no flag)                       MLMD_MYSQL_PASSWORD   ('' = no password)

The password has no flag on purpose: command lines are world-readable
(`ps`, /proc/<pid>/cmdline) and end up in shell history and CI logs, while a
process's environment is readable only by its user and CI systems inject and
mask secrets as environment variables.

Everything here is pure (no I/O) except `check_connection`; the proto import is
deferred so the CLI can refuse bad arguments before ML Metadata loads.
"""
import dataclasses
import os
import re
import socket
from typing import Mapping, Optional

from components.options import Meta, setting

ENV_HOST = 'MLMD_MYSQL_HOST'
ENV_PORT = 'MLMD_MYSQL_PORT'
ENV_DATABASE = 'MLMD_MYSQL_DATABASE'
ENV_USER = 'MLMD_MYSQL_USER'
ENV_PASSWORD = 'MLMD_MYSQL_PASSWORD'
ENV_VARS = (ENV_HOST, ENV_PORT, ENV_DATABASE, ENV_USER, ENV_PASSWORD)
DEFAULT_PORT = 3306
DEFAULT_DATABASE = 'mlmd'
SQLITE, MYSQL = 'sqlite', 'mysql'
# MLMD puts the name into `CREATE DATABASE IF NOT EXISTS <name>` unquoted.
_DATABASE_NAME = re.compile(r'[A-Za-z0-9_]{1,64}')


METADATA = 'ML Metadata on a MySQL/MariaDB server (default: SQLite <output-dir>/metadata.db)'


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
  """The ML Metadata store of a run; all defaults = SQLite in the output dir.

  Each value comes from its flag (or config file key), else its environment
  variable (`resolve`). The password has no flag: command lines are visible
  to every user.
  """
  mysql_host: Optional[str] = setting(
      None, 'keep ML Metadata on this MySQL/MariaDB server instead of '
      '<output-dir>/metadata.db', METADATA, metavar='HOST', env=ENV_HOST,
      flag='--metadata-mysql-host')
  mysql_port: int = setting(DEFAULT_PORT, 'its TCP port', METADATA,
                            metavar='N', env=ENV_PORT,
                            flag='--metadata-mysql-port')
  mysql_database: str = setting(
      DEFAULT_DATABASE, 'database of MLMD\'s tables; created if missing '
      '(letters, digits, _)', METADATA, metavar='NAME', env=ENV_DATABASE,
      flag='--metadata-mysql-database')
  mysql_user: str = setting('', 'login name (required with a host)', METADATA,
                            metavar='NAME', env=ENV_USER,
                            flag='--metadata-mysql-user')
  mysql_password: str = dataclasses.field(default='', repr=False, metadata={
      'setting': Meta('password (environment only, never a flag or printed)',
                      METADATA, flag='', env=ENV_PASSWORD, secret=True)})

  def cross_check(self) -> Optional[str]:
    return validate(self)

  @property
  def backend(self) -> str:
    return MYSQL if self.mysql_host else SQLITE

  def describe(self, sqlite_path: str) -> str:
    """Where the metadata goes, for humans (no password)."""
    if self.backend == SQLITE:
      return f'sqlite:{sqlite_path}'
    return (f'mysql://{self.mysql_user}@{self.mysql_host}:{self.mysql_port}/'
            f'{self.mysql_database}')


def resolve(host: Optional[str] = None, port: Optional[int] = None,
            database: Optional[str] = None, user: Optional[str] = None,
            environ: Optional[Mapping[str, str]] = None) -> MetadataConfig:
  """The MetadataConfig from flag values (None = not given), else the environment.

  Raises:
    ValueError: MLMD_MYSQL_PORT is not a number, or MySQL flags were given
      without a host (they would otherwise be silently ignored).
  """
  env = os.environ if environ is None else environ
  host = host or env.get(ENV_HOST) or None
  if not host:
    given = [f for f, v in (('--metadata-mysql-port', port),
                            ('--metadata-mysql-database', database),
                            ('--metadata-mysql-user', user)) if v is not None]
    if given:
      raise ValueError(f'{", ".join(given)} need(s) --metadata-mysql-host '
                       f'(or {ENV_HOST})')
    return MetadataConfig()
  if port is None and env.get(ENV_PORT):
    try:
      port = int(env[ENV_PORT])
    except ValueError:
      raise ValueError(f'{ENV_PORT}={env[ENV_PORT]!r}: expected a port number') from None
  return MetadataConfig(
      mysql_host=host,
      mysql_port=DEFAULT_PORT if port is None else port,
      mysql_database=database or env.get(ENV_DATABASE) or DEFAULT_DATABASE,
      mysql_user=user or env.get(ENV_USER) or '',
      mysql_password=env.get(ENV_PASSWORD, ''))


def validate(metadata: MetadataConfig) -> Optional[str]:
  """A one-line reason when the metadata settings cannot work, else None."""
  if metadata.backend == SQLITE:
    return None
  if not 0 < metadata.mysql_port < 65536:
    return f'--metadata-mysql-port {metadata.mysql_port}: not a TCP port'
  if not _DATABASE_NAME.fullmatch(metadata.mysql_database):
    return (f'--metadata-mysql-database {metadata.mysql_database!r}: use 1-64 '
            'letters, digits or underscores')
  if not metadata.mysql_user:
    return f'MySQL metadata needs --metadata-mysql-user (or {ENV_USER})'
  return None


def connection_config(metadata: MetadataConfig, sqlite_path: str):
  """The `metadata_store_pb2.ConnectionConfig` for the store (no I/O).

  SQLite: the same config as `tfx.orchestration.metadata.
  sqlite_metadata_connection_config(sqlite_path)` (minus its makedirs).
  MySQL: the same as `mysql_metadata_connection_config(...)`. Its
  `skip_db_creation` stays false (unset): MLMD then runs `CREATE DATABASE IF
  NOT EXISTS <database>` before `USE`, so a missing database is created.
  """
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  if metadata.backend == SQLITE:
    return metadata_store_pb2.ConnectionConfig(
        sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
            filename_uri=sqlite_path,
            connection_mode=metadata_store_pb2.SqliteMetadataSourceConfig
            .READWRITE_OPENCREATE))
  return metadata_store_pb2.ConnectionConfig(
      mysql=metadata_store_pb2.MySQLDatabaseConfig(
          host=metadata.mysql_host, port=metadata.mysql_port,
          database=metadata.mysql_database, user=metadata.mysql_user,
          password=metadata.mysql_password))


def check_connection(metadata: MetadataConfig, timeout: float = 10.0) -> Optional[str]:
  """Connects once (MySQL only): a one-line reason when that fails, else None.

  MLMD reports a refused login as "mysql_real_connect failed: errno: , error: "
  (no reason), and only once the first component starts; this names the likely
  cause before anything runs. Creates the database (and MLMD's tables) when
  missing, as the first run would.
  """
  if metadata.backend == SQLITE:
    return None
  where = metadata.describe('')
  try:
    with socket.create_connection((metadata.mysql_host, metadata.mysql_port),
                                  timeout=timeout):
      pass
  except OSError as e:
    return f'cannot reach the metadata server {where}: {e.strerror or e}'
  from ml_metadata import metadata_store  # pylint: disable=g-import-not-at-top
  try:
    metadata_store.MetadataStore(connection_config(metadata, ''))
  except Exception as e:  # pylint: disable=broad-except
    lines = str(e).strip().splitlines()
    detail = lines[-1] if lines else type(e).__name__
    if 'mysql_real_connect failed' in detail:  # MLMD gives no reason here
      return (f'metadata server {where} refused the login of '
              f'{metadata.mysql_user!r} (wrong user or {ENV_PASSWORD}?)')
    return f'metadata server {where}: {detail}'
  return None
