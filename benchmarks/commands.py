"""Running a command to completion, piped or on a pseudo-terminal, and timing it."""
from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path


class BenchmarkError(Exception):
    """A measurement could not be made (a command failed): its numbers would mean nothing."""


def run(argv: list[str], *, cwd: Path | str, env: dict[str, str], check: bool = True,
        timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run with stdin closed and both streams captured: (seconds, result)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=timeout)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise BenchmarkError(f"`{shlex.join(argv)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return elapsed, proc


def run_on_terminal(argv: list[str], *, cwd: Path | str, env: dict[str, str]) -> tuple[float, str]:
    """Run with stdout and stderr on a pseudo-terminal, as at a shell: (seconds, output)."""
    master, slave = os.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait()
    elapsed = time.perf_counter() - start
    os.close(master)
    output = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    if code != 0:
        raise BenchmarkError(f"`{shlex.join(argv)}` on a terminal exited {code}:\n{output}")
    return elapsed, output
