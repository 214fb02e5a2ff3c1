"""What the machine was doing while a figure was taken: the box is shared, so every figure carries its load."""

from __future__ import annotations

import os


def load_average() -> str:
    """``uptime``'s three load averages (1, 5, 15 min), e.g. ``"0.31 0.45 0.50"``."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
