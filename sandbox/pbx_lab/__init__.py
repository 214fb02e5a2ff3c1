"""The PBX lab: a real Asterisk 22 (the customer's PBX) plus a second instance playing phones and carrier."""

from sandbox.pbx_lab.build import LabUnavailable
from sandbox.pbx_lab.lab import Lab
from sandbox.pbx_lab.paths import LabPaths

__all__ = ["Lab", "LabPaths", "LabUnavailable"]
