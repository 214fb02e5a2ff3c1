"""Where the lab lives on the host, and where each instance keeps its files inside the chroot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LAB_DIR = "/var/tmp/pbxlink-lab"
CONFIG_DIR = Path(__file__).resolve().parent / "config"


@dataclass(frozen=True)
class Instance:
    """One Asterisk instance in the chroot; every path here is as seen *inside* the chroot."""

    name: str
    ami_port: int
    ami_user: str
    ami_secret: str

    @property
    def etc(self) -> str:
        return f"/etc/pbxlab/{self.name}"

    @property
    def conf(self) -> str:
        return f"{self.etc}/asterisk.conf"

    @property
    def run(self) -> str:
        return f"/run/pbxlab/{self.name}"

    @property
    def log(self) -> str:
        return f"/var/log/pbxlab/{self.name}"

    @property
    def lib(self) -> str:
        return f"/var/lib/pbxlab/{self.name}"

    @property
    def spool(self) -> str:
        # The PBX keeps the stock spool so recordings land in /var/spool/asterisk/monitor like FreePBX.
        return "/var/spool/asterisk" if self.name == "pbx" else f"/var/spool/pbxlab/{self.name}"


PBX = Instance(name="pbx", ami_port=5038, ami_user="lab", ami_secret="lab-secret")
WORLD = Instance(name="world", ami_port=5039, ami_user="world", ami_secret="world-secret")
INSTANCES = (PBX, WORLD)


@dataclass(frozen=True)
class LabPaths:
    base: Path

    @classmethod
    def from_env(cls) -> LabPaths:
        return cls(Path(os.environ.get("PBXLINK_LAB_DIR") or DEFAULT_LAB_DIR))

    @property
    def rootfs(self) -> Path:
        return self.base / "rootfs"

    @property
    def stamp(self) -> Path:
        return self.base / "rootfs.built"

    def host(self, inside: str) -> Path:
        """Host path of a path inside the chroot (use /run, not /var/run: the latter is a link)."""
        return self.rootfs / inside.lstrip("/")

    @property
    def pbx_master_db(self) -> Path:
        return self.host(f"{PBX.log}/master.db")

    @property
    def pbx_monitor_dir(self) -> Path:
        return self.host(f"{PBX.spool}/monitor")
