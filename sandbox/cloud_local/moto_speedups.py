"""moto server without its per-request directory listing.

moto server picks the backend for every request under one lock, and on the way lists its own package directory
from disk (``moto.backends.list_of_moto_modules``: ~170 ``isdir`` calls, about 1 ms) to see whether the host
names a service. The list never changes while the process runs, so it is read once. Local stack only
(installed by :class:`sandbox.cloud_local.CloudLocal` and :mod:`sandbox.cloud_local.moto_process`).
"""

from __future__ import annotations

from collections.abc import Iterable

from moto import backends

__all__ = ["install"]

_listed: tuple[str, ...] | None = None
_original = backends.list_of_moto_modules


def _list_once() -> Iterable[str]:
    global _listed
    if _listed is None:
        _listed = tuple(_original())
    return _listed


def install() -> None:
    backends.list_of_moto_modules = _list_once
