"""Open a local HTML file in headless Chromium and report what rendered (DevTools protocol over a pipe).

Uses Debian's ``chromium`` (installed by ``make setup``); nothing is downloaded. Chromium talks the DevTools
protocol on file descriptors 3 (commands in) and 4 (events and replies out), NUL-separated JSON, so no
port, websocket library or driver is needed. Network access is blocked by the host resolver rules: a
report that needs the network shows up as a console error.
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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: any host but this machine fails
    "--remote-debugging-pipe",
)

# Resolves when every chart container holds a drawn SVG or canvas, or after timeout_ms with what is there.
CHARTS_PROBE = """
new Promise((resolve) => {
  const deadline = Date.now() + %(timeout_ms)d;
  const state = () => Array.from(document.querySelectorAll('.recovery-chart')).map((el) => {
    const drawn = el.querySelector('svg.marks') || el.querySelector('canvas.marks');  // not the menu icon
    const box = drawn ? drawn.getBoundingClientRect() : null;
    return {id: el.id, kind: drawn ? drawn.tagName.toLowerCase() : null,
            width: box ? box.width : 0, height: box ? box.height : 0, text: el.textContent.slice(0, 200)};
  });
  const check = () => {
    const charts = state();
    const done = charts.every((c) => c.kind && c.width > 0 && c.height > 0);
    if (done || Date.now() > deadline) {
      resolve(JSON.stringify({charts, height: document.documentElement.scrollHeight}));
    } else {
      setTimeout(check, 50);
    }
  };
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})
"""


# Page y of the first heading whose text starts with the given text (for screenshots of one section).
TEXT_TOP = """
(() => {
  const wanted = %(text)s;
  for (const el of document.querySelectorAll('h1, h2, h3')) {
    if (el.textContent.trim().startsWith(wanted)) { return el.getBoundingClientRect().top + window.scrollY - 8; }
  }
  return null;
})()
"""


class BrowserError(RuntimeError):
    """Chromium is missing, died, or did not answer in time."""


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What a page did: its charts (kind and size of what was drawn) and its console errors."""

    url: str
    charts: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def undrawn(self) -> list[dict[str, Any]]:
        return [c for c in self.charts if not (c["kind"] in ("svg", "canvas") and c["width"] > 0 and c["height"] > 0)]


class Chromium:
    """A headless Chromium driven over the DevTools pipe; use as a context manager."""

    def __init__(self, user_data_dir: Path | None = None, timeout_s: float = 30.0) -> None:
        binary = find_chromium()
        if binary is None:
            raise BrowserError("chromium not found on PATH: install it with `apt-get install -y chromium`")
        self.timeout_s = timeout_s
        self._tmp = None if user_data_dir else tempfile.TemporaryDirectory(prefix="chromium-")
        profile = user_data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        to_child, self._write_fd = os.pipe()
        self._read_fd, from_child = os.pipe()

        def wire_pipes() -> None:  # in the child: fd 3 reads our commands, fd 4 carries its replies
            # copies above 9 first, so the pipes cannot be clobbered or already sit on 3/4 marked close-on-exec
            high_in, high_out = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,  # our own descriptors are non-inheritable (PEP 446); only 3 and 4 are passed
            preexec_fn=wire_pipes,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrowserError, OSError):  # already gone
                self.send("Browser.close")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for fd in (self._write_fd, self._read_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._tmp is not None:
            self._tmp.cleanup()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"chromium did not answer within {self.timeout_s:.0f} s")
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the DevTools pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept in ``events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        """The first event ``method`` of ``session`` (already received or arriving within the timeout)."""
        deadline = time.monotonic() + self.timeout_s
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._read_message(deadline))

    def open_page(self, url: str, width_px: int = 1280, height_px: int = 900) -> str:
        """Open ``url`` in a new tab and return its DevTools session (for :meth:`evaluate`)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width_px, "height": height_px, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"page script failed: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def open_report(
        self,
        path: Path,
        screenshot: Path | None = None,
        width_px: int = 1280,
        charts_timeout_ms: int = 20_000,
        max_height_px: int = 16_000,
        from_text: str | None = None,
    ) -> PageReport:
        """Load ``path``, wait until its charts are drawn, collect console errors, optionally screenshot it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width_px, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        first_event = len(self.events)
        url = path.resolve().as_uri()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session)
        probe = self.send(
            "Runtime.evaluate",
            {"expression": CHARTS_PROBE % {"timeout_ms": charts_timeout_ms}, "awaitPromise": True},
            session=session,
        )
        state = json.loads(probe["result"]["value"])
        report = PageReport(url, state["charts"])
        for event in self.events[first_event:]:
            if event.get("sessionId") != session:
                continue
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                if params.get("type") in ("error", "assert"):
                    report.errors.append(f"console.{params['type']}: {text}")
                elif params.get("type") == "warning":
                    report.warnings.append(text)
            elif event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                description = details.get("exception", {}).get("description") or details.get("text", "")
                report.errors.append(f"exception: {description}")
            elif event.get("method") == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error":
                    report.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        if screenshot is not None:
            height = min(int(state["height"]), max_height_px) if from_text is None else int(state["height"])
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width_px, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            params: dict[str, Any] = {"format": "png"}
            if from_text is not None:
                top = self.send(
                    "Runtime.evaluate",
                    {"expression": TEXT_TOP % {"text": json.dumps(from_text)}, "returnByValue": True},
                    session=session,
                )["result"].get("value")
                if top is None:
                    raise BrowserError(f"no heading {from_text!r} in {path}")
                clip_height = min(max_height_px, height - int(top))
                params["clip"] = {"x": 0, "y": int(top), "width": width_px, "height": clip_height, "scale": 1}
            shot = self.send("Page.captureScreenshot", params, session=session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            report.screenshot = screenshot
        self.send("Target.closeTarget", {"targetId": target})
        return report


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.browser REPORT.html OUT.png [HEADING] [HEIGHT_PX]``: screenshot a report (docs images)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(main.__doc__)
        return 2
    heading = args[2] if len(args) > 2 else None
    height = int(args[3]) if len(args) > 3 else 16_000
    with Chromium() as browser:
        page = browser.open_report(Path(args[0]), Path(args[1]), max_height_px=height, from_text=heading)
    print(f"{len(page.charts)} chart(s), {len(page.undrawn)} not drawn, {len(page.errors)} console error(s)")
    return 1 if page.undrawn or page.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
