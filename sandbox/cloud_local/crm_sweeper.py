"""The CRM sweeper's schedule, locally: what the ``crm_sweep`` and ``click_to_call_sweep`` Lambdas do every
minute in AWS, every ``interval`` seconds here (a call deferred by a rate limit should not wait a minute on a
developer's machine)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cloud import clicktocall
from cloud.crm.pipeline import sweep
from cloud.runtime import Runtime
from cloud.settings import Settings

from .stack import CloudLocal

__all__ = ["CrmSweeper"]

log = logging.getLogger("sandbox.cloud_local.crm_sweeper")


class CrmSweeper:
    name = "crm-sweeper"

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._rt: Runtime | None = None

    async def start(self, cloud: CloudLocal) -> None:
        self._rt = Runtime(Settings.from_env())
        self._task = asyncio.create_task(self._run(), name="crm-sweeper")

    async def _run(self) -> None:
        assert self._rt is not None
        while True:
            try:
                await asyncio.to_thread(sweep, self._rt)
                await asyncio.to_thread(clicktocall.sweep, self._rt)  # the click_to_call_sweep Lambda
            except Exception:
                log.exception("CRM sweep failed")
            self.rounds += 1
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._rt is not None:
            self._rt.close()

    def urls(self) -> dict[str, str]:
        return {}
