"""Start, stop and inspect the two Asterisk instances (`pbx` and `world`) inside the chroot."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.pbx_lab.build import LabUnavailable, build, is_built, log, run, unmount_all
from sandbox.pbx_lab.paths import CONFIG_DIR, INSTANCES, Instance, LabPaths

BOOT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    pid: int | None
    ami_port: int
    ami_ok: bool
    detail: str

    @property
    def running(self) -> bool:
        return self.pid is not None


class Lab:
    """Controls the lab on this host (root only)."""

    def __init__(self, paths: LabPaths | None = None) -> None:
        self.paths = paths or LabPaths.from_env()

    # ----------------------------------------------------------------------------------------------- helpers
    def _chroot(self, *argv: str) -> list[str]:
        return ["chroot", str(self.paths.rootfs), *argv]

    def _rx(self, inst: Instance, command: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return run(
            self._chroot("/usr/sbin/asterisk", "-C", inst.conf, "-rx", command),
            timeout=timeout,
            check=False,
            what=f"asterisk({inst.name}) -rx {command!r}",
        )

    def _pidfile(self, inst: Instance) -> Path:
        return self.paths.host(f"{inst.run}/asterisk.pid")

    def pid(self, inst: Instance) -> int | None:
        """PID of the instance when it runs (checked against /proc, so stale pid files are ignored)."""
        try:
            pid = int(self._pidfile(inst).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if not cmdline or not cmdline[0].endswith(b"asterisk") or inst.conf.encode() not in cmdline:
            return None
        return pid

    def _proc_mounted(self) -> bool:
        target = str((self.paths.rootfs / "proc").resolve())
        try:
            mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
        except OSError:
            return False
        return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)

    def _mount_proc(self) -> None:
        if not self._proc_mounted():
            run(["mount", "-t", "proc", "proc", str(self.paths.rootfs / "proc")], timeout=15, what="mount proc")

    def _module_dir(self) -> str:
        found = sorted(self.paths.rootfs.glob("usr/lib/*/asterisk/modules"))
        if not found:
            raise LabUnavailable(f"no Asterisk module directory under {self.paths.rootfs}/usr/lib")
        return "/" + str(found[0].relative_to(self.paths.rootfs))

    def _config_digest(self, inst: Instance) -> str:
        h = hashlib.sha256()
        src = CONFIG_DIR / inst.name
        for f in sorted(src.rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()

    def _digest_file(self, inst: Instance) -> Path:
        return self.paths.base / f"{inst.name}.config-sha256"

    def install_config(self, inst: Instance) -> None:
        """Copy the repo's config files for `inst` into the chroot (replacing the previous copy)."""
        etc = self.paths.host(inst.etc)
        if etc.exists():
            shutil.rmtree(etc)
        etc.mkdir(parents=True)
        moddir = self._module_dir()
        for src in sorted((CONFIG_DIR / inst.name).iterdir()):
            if src.is_file():
                text = src.read_text(encoding="utf-8").replace("@MODDIR@", moddir)
                (etc / src.name).write_text(text, encoding="utf-8")
        for inside in (inst.run, inst.log, inst.lib, f"{inst.lib}/keys", inst.spool, f"/var/cache/pbxlab/{inst.name}"):
            self.paths.host(inside).mkdir(parents=True, exist_ok=True)
        self._digest_file(inst).write_text(self._config_digest(inst), encoding="utf-8")

    def _config_changed(self, inst: Instance) -> bool:
        try:
            return self._digest_file(inst).read_text(encoding="utf-8") != self._config_digest(inst)
        except OSError:
            return True

    # ------------------------------------------------------------------------------------------ lifecycle
    def build(self, force: bool = False) -> None:
        if force and self.paths.rootfs.exists():
            self.down()  # never delete a rootfs under running instances
        build(self.paths, force=force)

    def up(self) -> bool:
        """Build if needed and start both instances.  Returns True when something was (re)started.

        Already running with unchanged configs: nothing happens.  Configs changed in the repo: the instance
        is restarted with the new files.
        """
        if os.geteuid() != 0:
            raise LabUnavailable("the PBX lab needs root (chroot, mount)")
        started = time.monotonic()
        build(self.paths)
        self._mount_proc()
        changed = False
        for inst in INSTANCES:
            pid = self.pid(inst)
            if pid is not None and not self._config_changed(inst):
                log(f"{inst.name}: already running (pid {pid})")
                continue
            if pid is not None:
                log(f"{inst.name}: configuration changed, restarting")
                self._stop(inst)
            self.install_config(inst)
            self._start(inst)
            changed = True
        for inst in INSTANCES:
            self._wait_booted(inst)
        log(f"lab up in {time.monotonic() - started:.1f} s: pbx AMI 127.0.0.1:5038, world AMI 127.0.0.1:5039")
        return changed

    def _start(self, inst: Instance) -> None:
        log(f"{inst.name}: starting asterisk -C {inst.conf}")
        self._pidfile(inst).unlink(missing_ok=True)
        for sock in ("asterisk.ctl",):
            self.paths.host(f"{inst.run}/{sock}").unlink(missing_ok=True)
        # Asterisk daemonizes; its own logs are in the instance's log dir (messages.log).
        run(self._chroot("/usr/sbin/asterisk", "-C", inst.conf), timeout=30, what=f"start {inst.name}")

    def _wait_booted(self, inst: Instance) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if self.pid(inst) is None and not self._pidfile(inst).exists():
                # not yet written, or the process died: give it a moment, then look at the log
                time.sleep(0.2)
            proc = self._rx(inst, "core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            last = (proc.stdout + proc.stderr).strip()
            if proc.returncode == 0 and "fully booted" in last.lower():
                break
            time.sleep(0.3)
        else:
            raise LabUnavailable(f"{inst.name} did not boot within {BOOT_TIMEOUT_S:.0f} s: {last[-500:]}")
        while time.monotonic() < deadline:
            if ami_login_ok("127.0.0.1", inst.ami_port, inst.ami_user, inst.ami_secret):
                log(f"{inst.name}: fully booted, AMI on 127.0.0.1:{inst.ami_port}")
                return
            time.sleep(0.3)
        raise LabUnavailable(f"{inst.name}: AMI on 127.0.0.1:{inst.ami_port} does not accept a login")

    def _stop(self, inst: Instance) -> None:
        pid = self.pid(inst)
        if pid is None:
            return
        log(f"{inst.name}: core stop now (pid {pid})")
        self._rx(inst, "core stop now", timeout=20)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _alive(pid):
                break
            log(f"{inst.name}: still running, sending {sig.name}")
            os.kill(pid, sig)
            end = time.monotonic() + 5
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.2)

    def down(self) -> None:
        if os.geteuid() != 0:
            raise LabUnavailable("the PBX lab needs root")
        if not self.paths.rootfs.exists():
            log("no lab here")
            return
        for inst in INSTANCES:
            self._stop(inst)
        if all(self.pid(i) is None for i in INSTANCES):
            unmount_all(self.paths.rootfs)
        log("lab down")

    def status(self) -> list[InstanceStatus]:
        out: list[InstanceStatus] = []
        for inst in INSTANCES:
            pid = self.pid(inst) if self.paths.rootfs.exists() else None
            detail = "stopped"
            ami_ok = False
            if pid is not None:
                proc = self._rx(inst, "core show channels count", timeout=10)
                lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
                detail = "; ".join(lines) if lines else proc.stderr.strip()
                ami_ok = ami_login_ok("127.0.0.1", inst.ami_port, inst.ami_user, inst.ami_secret)
            out.append(InstanceStatus(inst.name, pid, inst.ami_port, ami_ok, detail))
        return out

    def is_up(self) -> bool:
        return all(self.pid(i) is not None for i in INSTANCES)

    @property
    def built(self) -> bool:
        return is_built(self.paths)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours would still "exist"
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split(")")[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def ami_login_ok(host: str, port: int, user: str, secret: str, timeout: float = 3.0) -> bool:
    """Blocking check that AMI answers a Login with success."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            s.sendall(
                f"Action: Login\r\nActionID: probe\r\nUsername: {user}\r\nSecret: {secret}\r\n"
                "Events: off\r\n\r\n".encode()
            )
            while b"ActionID: probe" not in buf or not buf.endswith(b"\r\n\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            ok = b"Response: Success" in buf
            s.sendall(b"Action: Logoff\r\n\r\n")
            return ok
    except OSError:
        return False
