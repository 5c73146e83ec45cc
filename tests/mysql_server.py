"""A private, throw-away MariaDB server for tests: no system service, nothing left behind.

    with MariaDB() as server:          # ~2-4 s: install a datadir, start, wait until ready
      server.create_database_and_user('mlmd_test', 'mlmd', 'secret')
      server.port, server.sql('SELECT 1')

The server listens on 127.0.0.1 at a free port chosen at start, keeps its data in a
temporary directory (removed at stop) and runs as a child of this process that the
kernel terminates if this process dies (PR_SET_PDEATHSIG), so even a killed test
run leaves no server behind.
"""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

# Debian/Ubuntu: the server and mariadb-install-db are in mariadb-server-core, the
# `mariadb` client in mariadb-client-core. Neither package installs or starts a
# system service (mariadb-server would, and pulls in galera, perl, ...).
APT_PACKAGES = 'mariadb-server-core mariadb-client-core'
INSTALL_HINT = (f'install them with: sudo apt-get update && sudo apt-get install -y '
                f'--no-install-recommends {APT_PACKAGES}   (Debian 12/Ubuntu; '
                f'`make mariadb` does this)')
BINARIES = ('mariadbd', 'mariadb-install-db', 'mariadb')
# The server binary lives in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_DIRS = ('/usr/sbin', '/usr/local/sbin', '/usr/local/mysql/bin')


def find_binaries() -> Dict[str, Optional[str]]:
  """{name: absolute path or None} for the MariaDB programs the server needs."""
  path = os.pathsep.join([os.environ.get('PATH', ''), *_EXTRA_DIRS])
  return {name: shutil.which(name, path=path) for name in BINARIES}


def missing_binaries_message() -> Optional[str]:
  """None when every program is there, else a one-line reason with the fix."""
  missing = [n for n, p in find_binaries().items() if p is None]
  if not missing:
    return None
  return f'MariaDB programs not found: {", ".join(missing)}; {INSTALL_HINT}'


def _scratch_parent() -> Optional[str]:
  """/dev/shm when it has room (tmpfs: fsync is free, the datadir installs in ~1 s
  instead of ~6 s of ~1,000 fdatasyncs); else None = the default temp dir."""
  try:
    st = os.statvfs('/dev/shm')
    if st.f_bavail * st.f_frsize >= 256 * 2**20 and os.access('/dev/shm', os.W_OK):
      return '/dev/shm'
  except OSError:
    pass
  return None


_PREFIX = 'mariadb-test-'
_OWNER = 'owner.pid'  # the pid of the process that made the directory


def _sweep_stale(parent: Optional[str]) -> None:
  """Removes data directories of earlier sessions whose owner died (kill -9):
  their server died with them (PR_SET_PDEATHSIG), only the files remain."""
  parent = parent or tempfile.gettempdir()
  try:
    names = [n for n in os.listdir(parent) if n.startswith(_PREFIX)]
  except OSError:
    return
  for name in names:
    path = os.path.join(parent, name)
    try:
      with open(os.path.join(path, _OWNER)) as f:
        os.kill(int(f.read().strip()), 0)  # raises when that process is gone
    except ProcessLookupError:
      shutil.rmtree(path, ignore_errors=True)
    except (OSError, ValueError):
      pass  # no marker yet, unreadable, or not ours to judge: leave it


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _die_with_parent() -> None:
  """In the child before exec: SIGTERM it when the parent process dies."""
  try:
    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
  except OSError:
    pass  # not Linux/glibc: the fixture's finaliser still stops it


class MariaDB:
  """A private mariadbd on 127.0.0.1:<free port>; use as a context manager."""

  def __init__(self, startup_timeout: float = 60.0):
    self.startup_timeout = startup_timeout
    self.port: Optional[int] = None
    self.host = '127.0.0.1'
    self.bins = find_binaries()
    self.startup_seconds: Optional[float] = None
    self._tmp: Optional[str] = None
    self._proc: Optional[subprocess.Popen] = None

  # -- paths -----------------------------------------------------------------
  @property
  def datadir(self) -> str:
    return os.path.join(self._tmp, 'data')

  @property
  def socket_path(self) -> str:
    return os.path.join(self._tmp, 'mysqld.sock')

  @property
  def error_log(self) -> str:
    return os.path.join(self._tmp, 'error.log')

  def _log_tail(self, lines: int = 15) -> str:
    try:
      with open(self.error_log, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])
    except OSError:
      return '(no error log)'

  # -- lifecycle -------------------------------------------------------------
  def _server_args(self) -> List[str]:
    user = ['--user=root'] if os.geteuid() == 0 else []  # root must say so
    return [
        '--no-defaults',  # never read /etc/mysql: fully private configuration
        *user,
        f'--datadir={self.datadir}',
        f'--socket={self.socket_path}',
        f'--pid-file={os.path.join(self._tmp, "mysqld.pid")}',
        f'--log-error={self.error_log}',
        f'--tmpdir={self._tmp}',
        '--bind-address=127.0.0.1', f'--port={self.port}',
        '--skip-name-resolve',
        # Small and fast: a test database, not a production one.
        '--innodb-buffer-pool-size=64M', '--innodb-log-file-size=16M',
        '--innodb-flush-log-at-trx-commit=2', '--sync-frm=0', '--skip-log-bin',
        '--performance-schema=OFF',
    ]

  def start(self) -> 'MariaDB':
    problem = missing_binaries_message()
    if problem:
      raise RuntimeError(problem)
    began = time.monotonic()
    parent = _scratch_parent()
    _sweep_stale(parent)
    self._tmp = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
    with open(os.path.join(self._tmp, _OWNER), 'w') as f:
      f.write(str(os.getpid()))
    install = subprocess.run(
        [self.bins['mariadb-install-db'], '--no-defaults',
         *(['--user=root'] if os.geteuid() == 0 else []),
         f'--datadir={self.datadir}', '--auth-root-authentication-method=normal',
         '--skip-test-db', '--skip-name-resolve',
         '--innodb-log-file-size=16M'],
        capture_output=True, text=True, timeout=120, check=False)
    if install.returncode != 0:
      out = (install.stdout + install.stderr).strip()[-2000:]
      self.stop()
      raise RuntimeError(f'mariadb-install-db failed ({install.returncode}): {out}')
    for attempt in range(3):  # another process may take the free port meanwhile
      self.port = _free_port()
      self._proc = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
          [self.bins['mariadbd'], *self._server_args()],
          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
      if self._wait_ready():
        self.startup_seconds = time.monotonic() - began
        return self
      log = self._log_tail()
      self._terminate()
      if 'Address already in use' not in log or attempt == 2:
        self.stop()
        raise RuntimeError(f'mariadbd did not become ready on port {self.port}:\n{log}')
    raise AssertionError('unreachable')

  def _wait_ready(self) -> bool:
    deadline = time.monotonic() + self.startup_timeout
    while time.monotonic() < deadline:
      if self._proc.poll() is not None:
        return False
      ping = subprocess.run(self._client('SELECT 1'), capture_output=True,
                            text=True, timeout=30, check=False)
      if ping.returncode == 0:
        return self._tcp_open()
      time.sleep(0.1)
    return False

  def _tcp_open(self) -> bool:
    try:
      with socket.create_connection((self.host, self.port), timeout=2):
        return True
    except OSError:
      return False

  def _terminate(self) -> None:
    if self._proc is None:
      return
    if self._proc.poll() is None:
      subprocess.run(self._client('SHUTDOWN'), capture_output=True, timeout=60,
                     check=False)
      try:
        self._proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self._proc.kill()  # our own child, by its handle
        self._proc.wait(timeout=30)
    self._proc = None

  def stop(self) -> None:
    """Shuts the server down and removes its data directory."""
    self._terminate()
    if self._tmp:
      shutil.rmtree(self._tmp, ignore_errors=True)
      self._tmp = None

  @property
  def running(self) -> bool:
    return self._proc is not None and self._proc.poll() is None

  @property
  def pid(self) -> Optional[int]:
    return self._proc.pid if self._proc else None

  def __enter__(self) -> 'MariaDB':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # -- administration ----------------------------------------------------------
  def _client(self, statement: str, database: Optional[str] = None) -> List[str]:
    """The `mariadb` command running one statement as root over the socket."""
    return [self.bins['mariadb'], '--no-defaults', f'--socket={self.socket_path}',
            '--user=root', '--connect-timeout=2', '--batch', '--skip-column-names',
            *([database] if database else []), '-e', statement]

  def sql(self, statement: str, database: Optional[str] = None) -> List[List[str]]:
    """Runs SQL as root over the private socket; rows as lists of strings."""
    result = subprocess.run(self._client(statement, database), capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
      raise RuntimeError(f'SQL failed: {statement!r}: {result.stderr.strip()}')
    return [line.split('\t') for line in result.stdout.splitlines()]

  def create_database_and_user(self, database: str, user: str, password: str,
                               create_database: bool = True) -> None:
    """A password-authenticated TCP user with every privilege on `database`.

    With create_database=False only the grant is made (on a database that does
    not exist yet), so a client can prove it creates the database itself.
    """
    if create_database:
      self.sql(f'CREATE DATABASE `{database}`')
    quoted = password.replace('\\', '\\\\').replace("'", "\\'")
    self.sql(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{quoted}'")
    self.sql(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'")
