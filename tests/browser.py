"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, on a pipe.

No browser download, no driver, no extra package: Chromium's `--remote-debugging-pipe` reads
commands (JSON, NUL-terminated) on fd 3 and writes answers and events on fd 4. Every request a
page makes is recorded (Network.requestWillBeSent) and, unless it is the page's own file,
failed before it is sent (Fetch interception), so a test both sees and stops any request that
would leave the machine. Waits are on protocol events with a deadline, never on sleeps.

Also a tool: `python tests/browser.py REPORT.html SHOT.png [WIDTH HEIGHT]` takes a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "chromium"
# As root in a container: no sandbox; nothing that phones home; a fresh profile per run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--disable-default-apps",
    "--mute-audio",
    "--no-default-browser-check",
    # Belt and braces: no host name resolves, so nothing could be fetched even if asked for.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
)
DEADLINE_S = 60.0


def chromium_binary() -> str:
    """Debian's chromium; fails (never skips) when missing: scripts/test.sh installs it."""
    found = shutil.which(CHROMIUM)
    if not found:
        raise RuntimeError("chromium not found: install Debian's `chromium` (scripts/test.sh does)")
    return found


class BrowserError(RuntimeError):
    pass


@dataclass
class PageLoad:
    """What one page did: every request it made, and the state of its DOM once loaded."""

    url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


class Chromium:
    """One headless browser process; use as a context manager."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or chromium_binary()
        self.profile = tempfile.mkdtemp(prefix="reclaim-chromium-")
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: str | None = None

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Above fd 10, so that placing them at 3 and 4 in the child cannot clobber either one.
        child_in = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def place_pipes() -> None:  # runs in the child, before exec
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=place_pipes,
        )
        os.close(child_in)
        os.close(child_out)
        self._write = to_child_w
        self._read = from_child_r
        self.call("Browser.getVersion")

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(BrowserError, OSError):
                self.call("Browser.close", timeout=10)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            os.close(self._write)
            os.close(self._read)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- the protocol ---------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write, data) :]
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer from chromium before the deadline")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed the protocol pipe")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = DEADLINE_S,
    ) -> dict[str, Any]:
        """Send a command and wait for its answer; events that arrive meanwhile are kept."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]
            if "method" in message:
                self._events.append(message)

    def _event(self, deadline: float, pending: int | None = None) -> dict[str, Any]:
        """The next event; the answer to the `pending` command is checked on the way."""
        if self._events:
            return self._events.pop(0)
        while True:
            message = self._receive(deadline)
            if "method" in message:
                return message
            if message.get("id") == pending:
                result = message.get("result", {})
                if "error" in message or result.get("errorText"):
                    raise BrowserError(f"navigation failed: {message}")

    # -- pages ----------------------------------------------------------------------------------

    def open(self, path: Path, width: int = 1200, height: int = 900) -> PageLoad:
        """Load `path` in a new tab and wait for its load event; every request recorded, every
        request but the page's own file failed before it is sent."""
        url = path.resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = attached["sessionId"]
        self.session = session
        self.call("Network.enable", session=session)
        self.call("Page.enable", session=session)
        self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        load = PageLoad(url)
        # Not awaited: the navigation's own request is paused until the loop below lets it go.
        navigation = self._send("Page.navigate", {"url": url}, session)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            event = self._event(deadline, navigation)
            if event.get("sessionId") != session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
            elif method == "Fetch.requestPaused":
                request_url = params["request"]["url"]
                if request_url == url:
                    self.call("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
                else:
                    load.blocked.append(request_url)
                    self.call(
                        "Fetch.failRequest",
                        {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                        session,
                    )
            elif method == "Page.loadEventFired":
                break
        return load

    def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` in the open page."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        """PNG of the viewport, or of `clip` ({x, y, width, height} in page pixels)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = self.call("Page.captureScreenshot", params, session=self.session)["data"]
        return base64.b64decode(data)

    def drain_requests(self, load: PageLoad) -> None:
        """Record requests the page made after its load event (none expected)."""
        self.call("Runtime.evaluate", {"expression": "1"}, session=self.session)
        for event in list(self._events):
            if event.get("sessionId") == self.session:
                if event["method"] == "Network.requestWillBeSent":
                    load.requests.append(event["params"]["request"]["url"])
                elif event["method"] == "Fetch.requestPaused":
                    load.blocked.append(event["params"]["request"]["url"])
        self._events.clear()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print("usage: browser.py REPORT.html SHOT.png [WIDTH HEIGHT]", file=sys.stderr)
        return 2
    width, height = (int(argv[2]), int(argv[3])) if len(argv) == 4 else (1200, 1500)
    with Chromium() as browser:
        load = browser.open(Path(argv[0]), width, height)
        Path(argv[1]).write_bytes(browser.screenshot({"x": 0, "y": 0, "width": width,
                                                       "height": height}))  # fmt: skip
        print(f"requests: {load.requests}; blocked: {load.blocked}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
