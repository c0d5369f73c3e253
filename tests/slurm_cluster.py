"""A real, private, single-node SLURM cluster for the tests (and for trying the scripts by hand).

`start_cluster(base_dir)` installs Debian's slurmctld/slurmd/slurm-client/munge when they are
missing (root only, ~15 s), writes a one-node slurm.conf for this host into `base_dir`, and
starts munged, slurmctld and slurmd in the foreground as our own children, on free ports and
with their own munge socket, so they never touch a system-wide SLURM or munge. Clients find
the cluster through `SLURM_CONF` (see `SlurmCluster.env`). `SlurmCluster.stop()` cancels the
jobs, stops the daemons by pid, and kills any leftover process that was started by this
cluster (recognised by our private SLURM_CONF path in its environment).

By hand:  .venv/bin/python tests/slurm_cluster.py up [DIR]   (Ctrl-C stops everything)
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SLURM_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
SLURM_BINARIES = ["slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "munged"]
SBIN_DIRS = ["/usr/sbin", "/sbin", "/usr/local/sbin"]
# A requeued job may start again only after the credential lifetime (SLURM default 120 s).
REQUEUE_DELAY_S = 5


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message says why (tests skip on it)."""


def _which(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def _missing_binaries() -> list[str]:
    return [name for name in SLURM_BINARIES if _which(name) is None]


def ensure_slurm_installed(timeout_s: float = 600) -> None:
    """Install the Debian SLURM packages when a binary is missing; raise SlurmUnavailable if impossible."""
    missing = _missing_binaries()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM binaries missing ({', '.join(missing)}) and not root to install them")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM binaries missing ({', '.join(missing)}) and no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", *SLURM_PACKAGES]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        # Fresh machines often have no package lists yet: update once, then try again.
        update = subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=timeout_s)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            tail = (update.stderr + result.stderr).strip().splitlines()[-3:]
            raise SlurmUnavailable("apt-get could not install SLURM: " + " | ".join(tail))
    missing = _missing_binaries()
    if missing:
        raise SlurmUnavailable(f"SLURM packages installed but binaries still missing: {', '.join(missing)}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running private cluster: paths, daemons, and helpers to submit and watch jobs."""

    root: Path
    node_name: str
    cpus: int
    conf: Path
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)
    startup_s: float = 0.0

    @property
    def env(self) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, squeue, ...) talking to this cluster."""
        path = os.environ.get("PATH", "")
        for sbin in SBIN_DIRS:
            if sbin not in path.split(os.pathsep):
                path += os.pathsep + sbin
        return dict(os.environ, SLURM_CONF=str(self.conf), PATH=path)

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster, text output captured."""
        result = subprocess.run(list(cmd), env=env or self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def sbatch(
        self,
        script: str | Path,
        *args: str,
        options: list[str] | None = None,
        env: dict | None = None,
        cwd: str | Path | None = None,
    ) -> str:
        """Submit `script args...` with extra sbatch `options`; return the job id."""
        cmd = ["sbatch", "--parsable", *(options or []), str(script), *args]
        result = subprocess.run(cmd, env=env or self.env, capture_output=True, text=True, timeout=60, cwd=cwd)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip().split(";")[0]

    def job_info(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, RestartCnt, ExitCode, ...); {} when unknown."""
        result = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        if result.returncode != 0:
            return {}
        info: dict[str, str] = {}
        for line in result.stdout.splitlines()[:1]:  # array jobs: the first task is enough here
            for item in line.split():
                key, _, value = item.partition("=")
                info.setdefault(key, value)
        return info

    def job_state(self, job_id: str) -> str:
        return self.job_info(job_id).get("JobState", "UNKNOWN")

    def wait_for_job(
        self,
        job_id: str,
        timeout_s: float = 180,
        poll_s: float = 0.5,
        final_states: tuple[str, ...] = (
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "BOOT_FAIL",
            "DEADLINE",
            "PREEMPTED",
        ),
    ) -> dict[str, str]:
        """Poll until the job reaches a final state; return its info (raise TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout_s
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job_info(job_id)
            if info.get("JobState") in final_states:
                return info
            time.sleep(poll_s)
        raise TimeoutError(f"job {job_id} not finished after {timeout_s:.0f} s: {info}")

    def wait_until_idle(self, timeout_s: float = 60) -> None:
        """Wait until the node reports idle (slurmd registered with slurmctld)."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            self._check_daemons_alive()
            result = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=10)
            state = result.stdout.strip() or result.stderr.strip()
            if result.returncode == 0 and any(line.split()[1:] == ["idle"] for line in state.splitlines()):
                return
            time.sleep(0.3)
        raise RuntimeError(f"SLURM node not idle after {timeout_s:.0f} s (sinfo: {state!r})\n" + self.logs())

    def logs(self, lines: int = 20) -> str:
        """The tails of the daemon logs, for failure messages."""
        parts = []
        for name in ("munged", "slurmctld", "slurmd"):
            path = self.root / "log" / f"{name}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _check_daemons_alive(self) -> None:
        for name, proc in self.daemons.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n" + self.logs())

    def stop(self) -> None:
        """Cancel all jobs, stop the daemons by pid, and kill anything this cluster started."""
        if self.daemons.get("slurmctld") and self.daemons["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--quiet", "--partition", "debug", check=False)
            self._wait_for_no_jobs(timeout_s=20)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.daemons.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for proc in self.daemons.values():
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self._kill_leftovers()

    def _wait_for_no_jobs(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.run("squeue", "-h", "-o", "%i", check=False, timeout=10)
            if result.returncode != 0 or not result.stdout.strip():
                return
            time.sleep(0.5)

    def leftover_pids(self) -> list[int]:
        """Pids of live processes started by this cluster's jobs or daemons (our SLURM_CONF in
        their environment), the running daemons themselves excepted."""
        marker = f"SLURM_CONF={self.conf}".encode()
        daemons = {proc.pid for proc in self.daemons.values() if proc.poll() is None}
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in daemons | {os.getpid()}:
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0") and not _is_zombie(entry) and _parent(entry) not in daemons:
                pids.append(int(entry.name))  # (slurmctld's own helper, slurmscriptd, is no leftover)
        return pids

    @staticmethod
    def describe_pids(pids: list[int]) -> str:
        """'pid: command line' for each pid, for failure messages."""
        lines = []
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = "(gone)"
            lines.append(f"{pid}: {cmd[:200]}")
        return "\n".join(lines)

    def wait_for_no_leftovers(self, timeout_s: float = 20) -> list[int]:
        """Wait until the jobs' processes are gone; return those still alive after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while (pids := self.leftover_pids()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return pids

    def _kill_leftovers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.leftover_pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(1.0)


def _stat_fields(proc_dir: Path) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, ...; [] when the process is gone."""
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _is_zombie(proc_dir: Path) -> bool:
    fields = _stat_fields(proc_dir)
    return not fields or fields[0] == "Z"


def _parent(proc_dir: Path) -> int:
    fields = _stat_fields(proc_dir)
    return int(fields[1]) if len(fields) > 1 else -1


SLURM_CONF_TEMPLATE = """\
# One-node test cluster written by tests/slurm_cluster.py
ClusterName=musicgantest
SlurmctldHost={node}({addr})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket={munge_socket},cred_expire={cred_expire}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# Test the whole queue every second (default 60 s), so requeued and dependent jobs start at once.
SchedulerParameters=sched_interval=1
MpiDefault=none
SwitchType=switch/none
JobRequeue=1
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to `scontrol show job` for 10 minutes (the tests read them).
MinJobAge=600
# Job ids (and so the scripts' per-job ports) differ between clusters started at the same time.
FirstJobId={first_job_id}
KillWait=30
InactiveLimit=0
NodeName={node} NodeAddr={addr} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def start_cluster(base_dir: str | Path | None = None, cpus: int | None = None, timeout_s: float = 60) -> SlurmCluster:
    """Install (if needed) and start a private one-node cluster; return it once the node is idle."""
    started = time.monotonic()
    if os.geteuid() != 0:
        raise SlurmUnavailable("a private SLURM cluster needs root (slurmd runs jobs as any user)")
    ensure_slurm_installed()
    root = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="musicgan-slurm-"))
    root = root.resolve()
    for sub in ("state", "spool", "run", "log", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    node = socket.gethostname().split(".")[0]
    cpus = cpus or os.cpu_count() or 1
    munge_socket = root / "munge" / "munge.socket"
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF_TEMPLATE.format(
            node=node,
            addr="127.0.0.1",
            cpus=cpus,
            root=root,
            munge_socket=munge_socket,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            cred_expire=REQUEUE_DELAY_S,
            first_job_id=random.randint(1_000, 1_000_000),
        )
    )
    cluster = SlurmCluster(root=root, node_name=node, cpus=cpus, conf=conf)

    key = root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    daemon_env = cluster.env
    logs = root / "log"

    def launch(name: str, cmd: list[str]) -> None:
        log = open(logs / f"{name}.out", "ab")
        cluster.daemons[name] = subprocess.Popen(
            cmd, env=daemon_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()

    try:
        launch(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={root}/run/munged.pid",
                f"--log-file={logs}/munged.log",
                f"--seed-file={root}/munge/munged.seed",
            ],
        )
        _wait_for(lambda: munge_socket.exists(), timeout_s=10, what="munged socket", cluster=cluster)
        launch("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(conf)])
        _wait_for(
            lambda: cluster.run("scontrol", "ping", check=False, timeout=10).returncode == 0,
            timeout_s=timeout_s,
            what="slurmctld answering",
            cluster=cluster,
        )
        launch("slurmd", [_which("slurmd"), "-D", "-f", str(conf), "-N", node])
        cluster.wait_until_idle(timeout_s=timeout_s)
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_s = time.monotonic() - started
    return cluster


def _wait_for(predicate, timeout_s: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cluster._check_daemons_alive()
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}\n" + cluster.logs())


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] != "up":
        print(__doc__)
        return 2
    cluster = start_cluster(argv[1] if len(argv) > 1 else None)
    print(f"SLURM up in {cluster.startup_s:.1f} s on node {cluster.node_name} ({cluster.cpus} CPUs)")
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print("SLURM stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
