"""The periodic check of the PBX's CDR against what the cloud holds (``reconcile_report`` from the agent).

``compare`` is pure (the PBX's calls + the cloud's view in, findings out); ``service`` reads the cloud's view,
repairs what the cloud can repair itself, stores the result for the settings page, and says which calls the
agent must send again.
"""

from .compare import CloudCall, Findings, compare
from .service import CheckResult, last_check, on_reconcile_report

__all__ = ["CheckResult", "CloudCall", "Findings", "compare", "last_check", "on_reconcile_report"]
