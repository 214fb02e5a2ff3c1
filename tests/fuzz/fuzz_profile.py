"""Hypothesis settings shared by the fuzz tier (``tests/fuzz``; docs/reliability.md, "Hostile input").

Two profiles, chosen by ``PBXLINK_FUZZ``:

* ``ci`` (the default): derandomized (the same examples on every run and machine), no example database, and
  each test's ``fuzz(n)`` budget as given, so the whole tier takes well under a minute on two cores.
* ``long``: random seeds, an example database (in the system's temp directory) and fifty times the examples:
  ``PBXLINK_FUZZ=long .venv/bin/python -m pytest -q tests/fuzz`` (for ``make chaos`` and manual runs).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

__all__ = ["LONG", "fuzz"]

LONG: Final = os.environ.get("PBXLINK_FUZZ", "ci").strip().lower() == "long"
_SCALE: Final = 50 if LONG else 1

_COMMON: dict[str, Any] = {
    "deadline": None,  # two shared cores: timing is not the property under test
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
# Not loaded globally: the other tests' own hypothesis settings stay as they are.
settings.register_profile("pbxlink-fuzz-ci", derandomize=True, database=None, **_COMMON)
# The example database outside the repository: failures found by long runs are tried first next time.
_DATABASE: Final = DirectoryBasedExampleDatabase(Path(tempfile.gettempdir()) / "pbxlink-hypothesis")
settings.register_profile("pbxlink-fuzz-long", derandomize=False, database=_DATABASE, **_COMMON)
_PROFILE: Final = settings.get_profile("pbxlink-fuzz-long" if LONG else "pbxlink-fuzz-ci")

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(examples: int) -> Callable[[F], F]:
    """``@fuzz(200)`` above ``@given``: 200 examples in CI, 50x that with ``PBXLINK_FUZZ=long``."""
    return settings(_PROFILE, max_examples=examples * _SCALE)


@contextmanager
def fake_aws_credentials(region: str) -> Iterator[None]:
    """Credentials moto accepts, for a module-scoped fixture (pytest's monkeypatch is function-scoped); the
    environment is restored afterwards."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=region)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
