"""A private single-node Slurm cluster for the tests: Debian's `munged`, `slurmctld` and `slurmd` started as root
with their own key, socket, config, ports, state and spool folders under one temp folder, and stopped after.

Nothing is installed here (`.ci/run` installs `slurm-wlm` and `munge`); where the daemons or root are missing,
`unavailable()` says why and the tests that need the cluster are skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def unavailable() -> str | None:
    """Why no test cluster can start here, or None when it can."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"no {', '.join(missing)} on PATH (Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    """`start()` writes the cluster into a fresh folder and waits for its node to be idle; `env` is what a
    client needs (`SLURM_CONF`); `stop()` shuts the daemons down and removes the folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fk-slurm-"))  # short: munge's socket path has a length limit
        self.conf = self.root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        munge = self.root / "munge"
        munge.mkdir(mode=0o711)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.socket = munge / "socket"
        subprocess.run(
            [
                "munged", "--force", f"--socket={self.socket}", f"--key-file={key}",
                f"--pid-file={munge / 'pid'}", f"--log-file={munge / 'log'}", f"--seed-file={munge / 'seed'}",
            ],
            check=True,
        )  # fmt: skip
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir()
        self.conf.write_text(self._config())
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon], check=True, env=os.environ | self.env)
        self._wait("node idle", lambda: self.client("sinfo", "--noheader", "--format=%T").strip() == "idle")
        return self

    def _config(self) -> str:
        host = socket.gethostname().split(".")[0]
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 9 // 10
        lines = {
            "ClusterName": "forgetkit-test",
            "SlurmctldHost": host,
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={self.socket}",
            "CredType": "cred/munge",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "ReturnToService": 2,
            "MpiDefault": "none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "log" / "slurmctld.log",
            "SlurmdLogFile": self.root / "log" / "slurmd.log",
            "NodeName": f"{host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
            "PartitionName": f"debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def client(self, *command: str) -> str:
        return subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ | self.env).stdout

    def queued(self) -> list[str]:
        """Ids of the jobs the cluster still holds, pending or running."""
        return self.client("squeue", "--noheader", "--format=%i").split()

    def wait_empty(self, timeout: float = 900) -> None:
        self._wait("queue empty", lambda: not self.queued(), timeout)

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"test Slurm cluster: no {what} after {timeout:.0f} s; logs in {self.root / 'log'}")
            time.sleep(0.5)

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], env=os.environ | self.env, capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/pid"):
            path = self.root / pid_file
            if path.is_file():
                try:
                    os.kill(int(path.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)
