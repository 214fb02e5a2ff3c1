"""Build (once) the Debian sid chroot that holds Asterisk 22, cached outside the repository.

The build is idempotent and resumable: a stamp file marks a finished rootfs; a rootfs without the stamp
is a half-built leftover and is removed before building again.  Every subprocess has a timeout, and the
whole build has a deadline, so a machine without a package mirror fails fast with `LabUnavailable`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sandbox.pbx_lab.paths import LabPaths

PACKAGES = ("asterisk", "asterisk-modules", "sqlite3")
BUILD_DEADLINE_S = 600.0
STAMP_VERSION = "1"


class LabUnavailable(RuntimeError):
    """The lab cannot be built or started on this machine (the message says why)."""


def log(msg: str) -> None:
    print(f"[pbx-lab] {msg}", flush=True)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout; turn failures into `LabUnavailable` (when `check`)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    label = what or " ".join(argv[:3])
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabUnavailable(f"{label}: timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise LabUnavailable(f"{label}: {exc}") from exc
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise LabUnavailable(f"{label}: exit code {proc.returncode}\n{tail}")
    return proc


def find_mirror() -> str:
    """The Debian mirror this machine's apt uses (never hard-coded)."""
    candidates: list[str] = []
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*URIs:\s*(.+)$", line)
            if m:
                candidates.extend(m.group(1).split())
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+", line)
            if m:
                candidates.append(m.group(1))
    for extra in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        if extra == sources:
            continue
        for line in extra.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*URIs:\s*(.+)$", line)
            if m:
                candidates.extend(m.group(1).split())
    for uri in candidates:
        # The main archive, not the security one.
        if uri.startswith(("http://", "https://")) and "security" not in uri:
            return uri.rstrip("/")
    raise LabUnavailable("no Debian mirror found in /etc/apt/sources.list.d/debian.sources or sources.list")


def _mounted_under(root: Path) -> list[str]:
    """Mount points at or below `root` (deepest first)."""
    try:
        lines = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    prefix = str(root.resolve())
    points = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2:
            point = parts[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all(root: Path) -> None:
    for point in _mounted_under(root):
        run(["umount", "-l", point], timeout=30, check=False, what=f"umount {point}")


def is_built(paths: LabPaths) -> bool:
    return (
        paths.stamp.is_file()
        and paths.stamp.read_text(encoding="utf-8").strip() == STAMP_VERSION
        and (paths.rootfs / "usr/sbin/asterisk").exists()
    )


def _ensure_debootstrap(deadline: float) -> None:
    if shutil.which("debootstrap"):
        return
    log("installing debootstrap on the host (apt-get)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    proc = run(
        ["apt-get", "install", "-y", "debootstrap"],
        timeout=max(30.0, min(240.0, deadline - time.monotonic())),
        env=env,
        check=False,
        what="apt-get install debootstrap",
    )
    if proc.returncode != 0:
        run(
            ["apt-get", "update"],
            timeout=max(30.0, min(180.0, deadline - time.monotonic())),
            env=env,
            what="apt-get update",
        )
        run(
            ["apt-get", "install", "-y", "debootstrap"],
            timeout=max(30.0, min(240.0, deadline - time.monotonic())),
            env=env,
            what="apt-get install debootstrap",
        )
    if not shutil.which("debootstrap"):
        raise LabUnavailable("debootstrap is not available after apt-get install")


def _remaining(deadline: float, cap: float) -> float:
    left = deadline - time.monotonic()
    if left <= 5:
        raise LabUnavailable(f"lab build exceeded its {BUILD_DEADLINE_S:.0f} s budget")
    return min(cap, left)


def build(paths: LabPaths, *, force: bool = False) -> None:
    """Build the chroot if it is not built yet (or `force`)."""
    if os.geteuid() != 0:
        raise LabUnavailable("the PBX lab needs root (debootstrap, chroot, mount)")
    if is_built(paths) and not force:
        log(f"rootfs ready at {paths.rootfs}")
        return
    started = time.monotonic()
    deadline = started + BUILD_DEADLINE_S
    mirror = find_mirror()
    paths.base.mkdir(parents=True, exist_ok=True)
    if paths.rootfs.exists():
        log(f"removing unfinished rootfs {paths.rootfs}")
        unmount_all(paths.rootfs)
        if _mounted_under(paths.rootfs):
            raise LabUnavailable(f"cannot unmount file systems under {paths.rootfs}")
        shutil.rmtree(paths.rootfs)
    paths.stamp.unlink(missing_ok=True)
    _ensure_debootstrap(deadline)

    log(f"debootstrap --variant=minbase sid {paths.rootfs} {mirror}")
    run(
        ["debootstrap", "--variant=minbase", "sid", str(paths.rootfs), mirror],
        timeout=_remaining(deadline, 420),
        what="debootstrap",
    )
    log(f"debootstrap done in {time.monotonic() - started:.0f} s")

    # Never start services inside the chroot from package scripts.
    policy = paths.rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
    policy.chmod(0o755)
    apt_env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    apt_opts = ["-o", "Acquire::Check-Valid-Until=false", "-o", "Acquire::Retries=2"]
    log("apt-get update (chroot)")
    run(
        ["chroot", str(paths.rootfs), "apt-get", *apt_opts, "update"],
        timeout=_remaining(deadline, 180),
        env=apt_env,
        what="apt-get update in chroot",
    )
    log(f"apt-get install {' '.join(PACKAGES)} (chroot)")
    run(
        [
            "chroot",
            str(paths.rootfs),
            "apt-get",
            *apt_opts,
            "install",
            "-y",
            "--no-install-recommends",
            *PACKAGES,
        ],
        timeout=_remaining(deadline, 420),
        env=apt_env,
        what="apt-get install asterisk in chroot",
    )
    run(
        ["chroot", str(paths.rootfs), "apt-get", "clean"],
        timeout=60,
        check=False,
        what="apt-get clean",
    )
    # Started as root, Asterisk cannot read files owned by the chroot's `asterisk` user.
    for rel in ("etc/asterisk", "var/lib/asterisk", "var/spool/asterisk", "var/log/asterisk", "run/asterisk"):
        target = paths.rootfs / rel
        if target.exists():
            run(["chown", "-R", "root:root", str(target)], timeout=60, what=f"chown {rel}")
    if not (paths.rootfs / "usr/sbin/asterisk").exists():
        raise LabUnavailable("asterisk binary missing after installation")
    paths.stamp.write_text(STAMP_VERSION + "\n", encoding="utf-8")
    log(f"rootfs built in {time.monotonic() - started:.0f} s")
