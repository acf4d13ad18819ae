"""Run a long set-up command and show that it is working: the time so far and its latest line.

    python3 scripts/progress.py "installing Python packages" -- .venv/bin/pip install ...

`make run` and `make test` run pip and npm through it on the first run, which otherwise sit
silent for a minute or more. On a terminal one status line is rewritten every second; elsewhere
(CI logs, pipes) a line is printed every TICK_SECONDS. When the command fails, everything it
printed follows, then its exit status is this script's. Standard library only: it runs before
the virtualenv exists.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time

TICK_SECONDS = 10.0  # between status lines when not on a terminal
PREFIX = "make: "


def _status(label: str, elapsed: float, latest: str, width: int) -> str:
    line = f"{PREFIX}{label}: {elapsed:.0f} s"
    if latest:
        line += f", {latest}"
    return line[:width]


def run(label: str, command: list[str], *, terminal: bool, tick: float) -> int:
    """Run `command`, reporting progress on stdout; return its exit status."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(  # noqa: S603 - the Makefile's own commands
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        print(f"{PREFIX}{label}: cannot run {command[0]}: {exc.strerror}", flush=True)
        return 127
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output: list[str] = []
    latest = ""
    width = shutil.get_terminal_size().columns - 1 if terminal else 200
    shown = started
    print(f"{PREFIX}{label} ...", flush=True)
    while True:
        try:
            line = lines.get(timeout=min(1.0, tick))
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            output.append(line)
            # Indented lines continue an earlier one (tracebacks, build-backend warnings).
            if line.strip() and not line[0].isspace():
                latest = line.strip()
        now = time.monotonic()
        if terminal:
            sys.stdout.write("\r\033[K" + _status(label, now - started, latest, width))
            sys.stdout.flush()
        elif now - shown >= tick:
            print(_status(label, now - started, latest, width), flush=True)
            shown = now
    code = process.wait()
    elapsed = time.monotonic() - started
    if terminal:
        sys.stdout.write("\r\033[K")
    if code != 0:
        sys.stdout.write("".join(output))
        print(f"{PREFIX}{label}: failed after {elapsed:.0f} s (exit status {code})", flush=True)
        return code
    print(f"{PREFIX}{label}: done in {elapsed:.0f} s", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """`progress.py LABEL -- COMMAND...`"""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: progress.py LABEL -- COMMAND...", file=sys.stderr)
        return 2
    tick = float(os.environ.get("PROGRESS_TICK_SECONDS", TICK_SECONDS))
    return run(argv[0], argv[2:], terminal=sys.stdout.isatty(), tick=tick)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
