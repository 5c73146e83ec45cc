"""Headless Chromium driven over the DevTools protocol (CDP), for page tests.

Debian's `chromium` (`make chromium`) runs with --remote-debugging-port=0;
the port it picked is read from DevToolsActivePort in its fresh profile, and
the page target is driven over a websocket (websocket-client, already in the
lock). While a page loads, every console message, uncaught exception, browser
log entry and network request is recorded, so a test can assert on what a
person's browser would show, not on what the HTML says.
"""
import base64
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Any, Dict, List

import websocket

START_TIMEOUT = 30.0  # seconds for Chromium to open its DevTools port
CALL_TIMEOUT = 60.0   # seconds for any one CDP command or awaited event


class Chromium:
  """One headless Chromium with one page; a context manager.

  Attributes:
    events: every CDP event received so far, as {'method', 'params'}.
  """

  def __init__(self, width: int = 1200, height: int = 900):
    self._size = (width, height)
    self._profile = None
    self._process = None
    self._socket = None
    self._next_id = 0
    self.events: List[Dict[str, Any]] = []

  def __enter__(self) -> 'Chromium':
    binary = shutil.which('chromium')
    if binary is None:
      raise RuntimeError('chromium is not installed: run `make chromium`')
    self._profile = tempfile.mkdtemp(prefix='chromium_profile_')
    log = open(os.path.join(self._profile, 'stderr.log'), 'wb')
    # Its own session: close() ends Chromium's helper processes with it.
    self._process = subprocess.Popen(
        [binary, '--headless', '--no-sandbox', '--disable-gpu',
         '--remote-debugging-port=0', f'--user-data-dir={self._profile}',
         '--no-first-run', '--no-default-browser-check', '--disable-extensions',
         '--hide-scrollbars', f'--window-size={self._size[0]},{self._size[1]}',
         'about:blank'],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    log.close()
    try:
      self._connect(self._port())
      for domain in ('Page', 'Runtime', 'Log', 'Network'):
        self.call(f'{domain}.enable')
    except BaseException:
      self.close()
      raise
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _port(self) -> int:
    active = pathlib.Path(self._profile, 'DevToolsActivePort')
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
      if self._process.poll() is not None:
        raise RuntimeError(f'chromium exited with {self._process.returncode}: '
                           + self.stderr()[-2000:])
      lines = active.read_text().split('\n') if active.exists() else []
      if len(lines) >= 2 and lines[0].isdigit():
        return int(lines[0])
      time.sleep(0.1)
    raise RuntimeError('chromium opened no DevTools port: ' + self.stderr()[-2000:])

  def _connect(self, port: int) -> None:
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list',
                                timeout=CALL_TIMEOUT) as response:
      targets = json.load(response)
    page = next(t for t in targets if t['type'] == 'page')
    # No Origin header: Chromium refuses websocket origins it was not told of.
    self._socket = websocket.create_connection(
        page['webSocketDebuggerUrl'], timeout=CALL_TIMEOUT, suppress_origin=True)

  def stderr(self) -> str:
    path = os.path.join(self._profile, 'stderr.log')
    return open(path, errors='replace').read() if os.path.exists(path) else ''

  def close(self) -> None:
    if self._socket is not None:
      self._socket.close()
      self._socket = None
    if self._process is not None and self._process.poll() is None:
      os.killpg(self._process.pid, signal.SIGTERM)  # the group we started
      try:
        self._process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
    if self._profile is not None:
      shutil.rmtree(self._profile, ignore_errors=True)
      self._profile = None

  def _receive(self) -> Dict[str, Any]:
    message = json.loads(self._socket.recv())
    if 'method' in message:
      self.events.append(message)
    return message

  def call(self, method: str, **params) -> Dict[str, Any]:
    """Sends a CDP command; returns its result (events meanwhile are recorded)."""
    self._next_id += 1
    self._socket.send(json.dumps({'id': self._next_id, 'method': method,
                                  'params': params}))
    while True:
      message = self._receive()
      if message.get('id') == self._next_id:
        if 'error' in message:
          raise RuntimeError(f'{method}: {message["error"]}')
        return message.get('result', {})

  def wait_for(self, method: str) -> Dict[str, Any]:
    """The params of the next `method` event (recorded or still to come)."""
    for event in self.events:
      if event['method'] == method:
        return event['params']
    while True:  # each recv times out after CALL_TIMEOUT
      message = self._receive()
      if message.get('method') == method:
        return message['params']

  def load(self, url: str) -> None:
    """Opens `url` and waits for its load event (all <img> done by then)."""
    self.events.clear()
    self.call('Page.navigate', url=url)
    self.wait_for('Page.loadEventFired')

  def evaluate(self, expression: str) -> Any:
    """The JSON value of a JavaScript expression in the page."""
    result = self.call('Runtime.evaluate', expression=expression, returnByValue=True)
    if 'exceptionDetails' in result:
      raise RuntimeError(f'{expression}: {result["exceptionDetails"]}')
    return result['result'].get('value')

  def screenshot(self) -> bytes:
    """PNG of the whole page, beyond the window too."""
    data = self.call('Page.captureScreenshot', format='png',
                     captureBeyondViewport=True)['data']
    return base64.b64decode(data)

  def errors(self) -> List[str]:
    """Console errors, uncaught exceptions and error log entries, as text."""
    found = []
    for event in self.events:
      method, params = event['method'], event['params']
      if method == 'Runtime.consoleAPICalled' and params['type'] in ('error', 'assert'):
        found.append('console: ' + ' '.join(
            str(a.get('value', a.get('description', ''))) for a in params['args']))
      elif method == 'Runtime.exceptionThrown':
        details = params['exceptionDetails']
        found.append('exception: ' + details.get('exception', {}).get(
            'description', details.get('text', '')))
      elif method == 'Log.entryAdded' and params['entry']['level'] == 'error':
        found.append(f"log: {params['entry'].get('url', '')} {params['entry']['text']}")
    return found

  def failed_requests(self) -> List[str]:
    """Requests that failed or were answered with an HTTP error."""
    urls = {e['params']['requestId']: e['params']['request']['url']
            for e in self.events if e['method'] == 'Network.requestWillBeSent'}
    failed = []
    for event in self.events:
      params = event['params']
      if event['method'] == 'Network.loadingFailed':
        failed.append(f"{urls.get(params['requestId'], '?')}: {params['errorText']}")
      elif (event['method'] == 'Network.responseReceived' and
            params['response'].get('status', 0) >= 400):
        failed.append(f"{params['response']['url']}: {params['response']['status']}")
    return failed

  def requested_urls(self) -> List[str]:
    return [e['params']['request']['url'] for e in self.events
            if e['method'] == 'Network.requestWillBeSent']
