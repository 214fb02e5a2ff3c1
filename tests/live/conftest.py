"""The live tier: a real Asterisk 22 lab (sandbox/pbx_lab).

`pbx_lab` (session scope, session event loop) brings the lab up, building the chroot on first use, and
yields a `LiveLab` with the AMI endpoints/credentials, `world` and `admin`.  When the lab cannot be built
here the tests are skipped, but with `CI` set they fail: CI must run the live tier.

Async tests that use `pbx_lab` must run in the session loop (the AMI connections live there):
    pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]
A lab this session started is stopped at the end; a lab that was already running (`make lab`) is left up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest_asyncio

from sandbox.pbx_lab import Lab, LabUnavailable
from sandbox.pbx_lab.admin import PbxAdmin
from sandbox.pbx_lab.live import LiveLab
from sandbox.pbx_lab.world import World
from sandbox.unavailable import unavailable


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pbx_lab() -> AsyncIterator[LiveLab]:
    lab = Lab()
    if os.geteuid() != 0:
        unavailable("PBX lab unavailable: needs root (debootstrap, chroot, mount)")
    was_up = lab.is_up()
    try:
        await asyncio.to_thread(lab.up)
    except LabUnavailable as exc:
        unavailable(f"PBX lab unavailable: {exc}")
    world = await World.connect()
    admin = await PbxAdmin.connect()
    live = LiveLab(world=world, admin=admin, paths=lab.paths, started_here=not was_up)
    try:
        yield live
    finally:
        try:
            await world.hangup_all()
        finally:
            await world.close()
            await admin.close()
            if not was_up:
                await asyncio.to_thread(lab.down)
