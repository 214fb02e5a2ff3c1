"""The Chalice app's REST routes on a local port, through Chalice's own local API Gateway emulation.

``chalice.local.LocalGateway`` is what ``chalice local`` runs (route matching, the proxy event, CORS, built-in
authorizers), so REST behaves as under ``chalice local``; this only hosts it in a thread of the cloud-local
process instead of a second process, so the REST handlers share the environment (moto endpoint, table prefix,
``WS_MGMT_ENDPOINT``) with the websocket handlers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalChalice, LocalDevServer

__all__ = ["LocalRestServer"]

log = logging.getLogger("sandbox.cloud_local.rest")


class _LoggingHandler(ChaliceRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("REST " + format, *args)


def _thread_local_requests(app: Chalice) -> None:
    """Give ``app.current_request`` one value per thread, as ``chalice local`` does: the server is threaded, and
    a shared attribute would let concurrent requests see each other's request. Idempotent (unlike
    ``chalice.local.create_local_server``, which fails on an app it already converted)."""
    if not isinstance(app, LocalChalice):
        app.__class__ = type(f"Local{type(app).__name__}", (LocalChalice, type(app)), {})


class LocalRestServer:
    """Serve ``app``'s REST routes on ``host:port`` (0 = a free port) until :meth:`stop`."""

    def __init__(self, app: Chalice, host: str = "127.0.0.1", port: int = 0, stage: str = "local") -> None:
        self.app = app
        self.host = host
        _thread_local_requests(app)
        config = Config.create(chalice_stage=stage, app_name=app.app_name, lambda_timeout=60, lambda_memory_size=128)
        self._dev = LocalDevServer(app, config, host, port, handler_cls=_LoggingHandler)  # binds now
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._dev.server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        server = self._dev.server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="cloud-local-rest", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Blocks until the serving thread has stopped; call it off the event loop."""
        if self._thread is not None:
            self._dev.server.shutdown()
            self._thread.join()
            self._thread = None
        self._dev.server.server_close()
