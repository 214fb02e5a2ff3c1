"""``edge-agent run`` as its own process, so it can be killed the hard way (SIGKILL: no clean-up, no flush) and
started again on the same data directory (its outbox survives, as on a real host)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

__all__ = ["AgentProcess"]

ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    def __init__(self, environ: Mapping[str, str], log_path: Path) -> None:
        self.environ = dict(environ)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        environ = {**os.environ, **self.environ, "PYTHONPATH": str(ROOT)}
        with self._log() as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_agent.cli", "run", env=environ, cwd=ROOT, stdout=log, stderr=log
            )
        self.starts += 1

    def _log(self) -> IO[str]:
        log = open(self.log_path, "a")  # noqa: SIM115 - closed by the caller
        log.write(f"--- start {self.starts + 1}\n")
        log.flush()
        return log

    async def kill(self) -> None:
        """SIGKILL: the agent gets no chance to close anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.kills += 1

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (what systemd sends) and wait; SIGKILL if it does not stop in time."""
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()
