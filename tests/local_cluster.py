"""A real multi-node SLURM cluster on one machine: one network + UTS namespace per node.

Each node `NAME-nodeI` is a network namespace with its own hostname (a UTS namespace) and
one address, 10.X.Y.(2+I), on a private bridge; slurmctld runs the same way in `NAME-ctl`
(10.X.Y.2), and the bridge's host end, 10.X.Y.1, is the only address of that subnet outside
the namespaces (host-side clients such as sbatch reach slurmctld through it). Nothing of the
cluster listens on the host's own interfaces. The namespaces have no default route, no IPv6
and an empty resolv.conf, so nothing they send leaves the bridge or their loopback; they all
see the same /etc/hosts of cluster names (bind-mounted from the state folder into their own
mount namespace; the host's file is untouched). munged runs in `NAME-ctl` too: its socket is
a file, reachable from every namespace, so every process of the cluster lives in one of its
namespaces and `down` finds them all by the cluster's name alone. Debian's slurmd is not
built for several daemons per host (no --enable-multiple-slurmd), but in its own namespaces
each slurmd has the host to itself: the same port, its own hostname. Everything lives in the state folder (slurm.conf,
spool, logs, munge key), never in /etc/slurm.

    up(nodes, name, state_dir)  ->  LocalCluster (a SlurmCluster: sbatch, wait_for_job, ...)
    down(name, state_dir)           removes every process, namespace, link and file of it

Command line: launch/local-cluster (up | down | status) [--nodes N] [--name NAME] ...
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # run as a script by launch/local-cluster

from slurm_cluster import (
    REQUEUE_DELAY_S,
    SlurmCluster,
    SlurmUnavailable,  # noqa: E402
    _is_zombie,
    _wait_for,
    _which,
    ensure_slurm_installed,
    free_port,
)

DEFAULT_NAME = "mgc"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # "NAME-v12" and "NAME-br" fit the 15-byte interface names
SLURMD_PORT = 6818  # the same in every node: each slurmd has a network stack of its own
LAYOUT_FILE = "cluster.json"

CONF_TEMPLATE = """\
# {nodes}-node cluster on one machine, written by launch/local-cluster (tests/local_cluster.py)
ClusterName={name}
SlurmctldHost={ctld_host}({ctld_addr})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket={root}/munge/munge.socket,cred_expire={cred_expire}
StateSaveLocation={root}/state
# %n: one spool, log and pid file per node (all nodes share this folder)
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
MpiDefault=none
SwitchType=switch/none
JobRequeue=1
ReturnToService=2
# The nodes' CPU counts are a share of this machine's, not what each slurmd detects.
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
FirstJobId={first_job_id}
KillWait=30
InactiveLimit=0
# A node that stops answering is marked DOWN after this many seconds (default 300).
SlurmdTimeout=30
{node_lines}
PartitionName=debug Nodes={node_list} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


class ClusterError(RuntimeError):
    """The cluster cannot be brought up or down as asked; the message says why."""


@dataclass
class Layout:
    """Names and addresses of one local cluster, kept in STATE/cluster.json for `down`."""

    name: str
    root: Path
    subnet: str  # "10.X.Y": host end .1, controller .2, nodes .3, .4, ...
    nodes: int
    cpus_per_node: int

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def host_addr(self) -> str:
        return f"{self.subnet}.1"

    @property
    def ctl_name(self) -> str:
        return f"{self.name}-ctl"

    @property
    def namespaces(self) -> list[str]:
        return [self.ctl_name, *self.node_names]

    def addr_of(self, namespace: str) -> str:
        return f"{self.subnet}.{2 + self.namespaces.index(namespace)}"  # ctl .2, nodeI .(2+I)

    def link_of(self, namespace: str) -> str:
        return f"{self.name}-v{self.namespaces.index(namespace)}"  # the host end of its veth pair

    def node_name(self, index: int) -> str:
        return f"{self.name}-node{index}"

    def node_addr(self, index: int) -> str:
        return self.addr_of(self.node_name(index))

    @property
    def node_names(self) -> list[str]:
        return [self.node_name(i) for i in range(1, self.nodes + 1)]

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def save(self) -> None:
        data = {"name": self.name, "subnet": self.subnet, "nodes": self.nodes, "cpus_per_node": self.cpus_per_node}
        (self.root / LAYOUT_FILE).write_text(json.dumps(data) + "\n")

    @classmethod
    def load(cls, root: Path) -> Layout | None:
        try:
            data = json.loads((root / LAYOUT_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(
            name=data["name"],
            root=root,
            subnet=data["subnet"],
            nodes=data["nodes"],
            cpus_per_node=data["cpus_per_node"],
        )


@dataclass
class LocalCluster(SlurmCluster):
    """A running local cluster: the SlurmCluster client helpers plus its layout."""

    layout: Layout | None = None
    node_names: list[str] = field(default_factory=list)

    def wait_until_idle(self, timeout_s: float = 60) -> None:
        """Wait until every node reports idle (all slurmds registered)."""
        deadline = time.monotonic() + timeout_s
        states = ""
        while time.monotonic() < deadline:
            self._check_daemons_alive()
            result = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=10)
            states = result.stdout.strip() or result.stderr.strip()
            idle = {line.split()[0] for line in states.splitlines() if line.split()[1:] == ["idle"]}
            if result.returncode == 0 and idle >= set(self.node_names):
                return
            time.sleep(0.3)
        raise ClusterError(f"nodes not idle after {timeout_s:.0f} s (sinfo: {states!r})\n" + self.logs())

    def logs(self, lines: int = 20) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _check_daemons_alive(self) -> None:
        """Every daemon started so far still runs (else the error, with the logs)."""
        for path in (self.root / "run").glob("*.daemon"):
            if not _is_alive(int(path.read_text().split()[0])):
                raise ClusterError(f"{path.stem} exited\n" + self.logs())

    def stop(self) -> None:
        down(self.layout.name, self.root)

    def node_pids(self, node: str) -> list[int]:
        """Every process in that node's network namespace (slurmd, its steps, the jobs)."""
        return _netns_pids(node)


def default_state_dir(name: str) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"musicgan-cluster-{name}"


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result


def _in_netns(node: str, *cmd: str) -> subprocess.CompletedProcess:
    return _sh("ip", "-n", node, *cmd)


def _netns_list() -> list[str]:
    return _sh("ip", "netns", "list", check=False).stdout.split()


def _netns_exists(node: str) -> bool:
    return node in _netns_list()


def _link_exists(link: str) -> bool:
    return _sh("ip", "link", "show", "dev", link, check=False).returncode == 0


def _netns_pids(node: str) -> list[int]:
    if not _netns_exists(node):
        return []
    return [int(pid) for pid in _sh("ip", "netns", "pids", node, check=False).stdout.split()]


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in, to pick a subnet nobody uses."""
    text = _sh("ip", "-4", "-o", "route", "show", "table", "all", check=False).stdout
    text += _sh("ip", "-4", "-o", "addr", "show", check=False).stdout
    return [ipaddress.ip_network(token, strict=False) for token in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?", text)]


def _free_subnet(name: str) -> str:
    """A 10.X.Y.0/24 (X in 200-249) that overlaps nothing on the host, found from the name."""
    used = _used_networks()
    start = zlib.crc32(name.encode())
    for offset in range(50 * 256):
        value = (start + offset) % (50 * 256)
        subnet = f"10.{200 + value // 256}.{value % 256}"
        if not any(ipaddress.ip_network(f"{subnet}.0/24").overlaps(net) for net in used):
            return subnet
    raise ClusterError("no free 10.x.y.0/24 subnet for the cluster's bridge")


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ClusterError(f"cluster name {name!r}: 1-10 lowercase letters or digits, starting with a letter")


def _hosts_file(layout: Layout) -> str:
    lines = ["127.0.0.1\tlocalhost"] + [f"{layout.addr_of(ns)}\t{ns}" for ns in layout.namespaces]
    return "\n".join(lines) + "\n"


def _write_conf(layout: Layout) -> None:
    node_lines = "\n".join(
        f"NodeName={layout.node_name(i)} NodeHostname={layout.node_name(i)} NodeAddr={layout.node_addr(i)} "
        f"CPUs={layout.cpus_per_node} State=UNKNOWN"
        for i in range(1, layout.nodes + 1)
    )
    layout.conf.write_text(
        CONF_TEMPLATE.format(
            nodes=layout.nodes,
            name=layout.name,
            ctld_host=layout.ctl_name,
            ctld_addr=layout.addr_of(layout.ctl_name),
            ctld_port=free_port(),
            slurmd_port=SLURMD_PORT,
            root=layout.root,
            cred_expire=REQUEUE_DELAY_S,
            first_job_id=random.randint(1_000, 1_000_000),
            node_lines=node_lines,
            node_list=",".join(layout.node_names),
        )
    )


def _make_folders(layout: Layout) -> None:
    for sub in ("state", "spool", "run", "log", "munge", "etc"):
        (layout.root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root / "munge", 0o700)
    (layout.root / "etc" / "hosts").write_text(_hosts_file(layout))
    (layout.root / "etc" / "resolv.conf").write_text("# no DNS inside the cluster's nodes\n")
    key = layout.root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)


def _make_network(layout: Layout) -> None:
    """The bridge with the host end, then one namespace per node joined to it by a veth pair."""
    _sh("ip", "link", "add", layout.bridge, "type", "bridge")
    _disable_ipv6(layout.bridge)
    _sh("ip", "addr", "add", f"{layout.host_addr}/24", "dev", layout.bridge)
    _sh("ip", "link", "set", layout.bridge, "up")
    for node in layout.namespaces:
        link = layout.link_of(node)
        _sh("ip", "netns", "add", node)
        _in_netns(node, "link", "set", "lo", "up")
        for scope in ("all", "default"):  # before eth0 exists, so it never gets an IPv6 address
            _sh("ip", "netns", "exec", node, "sysctl", "-q", "-w", f"net.ipv6.conf.{scope}.disable_ipv6=1", check=False)
        _sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", node)
        _disable_ipv6(link)
        _sh("ip", "link", "set", link, "master", layout.bridge, "up")
        _in_netns(node, "addr", "add", f"{layout.addr_of(node)}/24", "dev", "eth0")
        _in_netns(node, "link", "set", "eth0", "up")


def _disable_ipv6(link: str) -> None:
    """No IPv6 on the host end either: no link-local address, no router or neighbour solicitations."""
    path = Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6")
    if path.exists():
        path.write_text("1\n")


def _daemon_env() -> dict[str, str]:
    # No SLURM_CONF in the daemons' environment (they get -f): a process that carries our
    # SLURM_CONF is then one of the jobs' (see SlurmCluster.leftover_pids).
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


def _spawn(layout: Layout, name: str, cmd: list[str]) -> int:
    """Start a daemon detached from us (it outlives `up`); its pid is kept in run/NAME.daemon."""
    with open(layout.root / "log" / f"{name}.out", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=_daemon_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (layout.root / "run" / f"{name}.daemon").write_text(f"{proc.pid}\n")
    return proc.pid


def _in_namespace(layout: Layout, namespace: str, *cmd: str) -> list[str]:
    """`cmd` inside `namespace` (a node or the controller): its network namespace, a UTS
    namespace with its hostname, a mount namespace where /etc/hosts and resolv.conf are ours."""
    etc = layout.root / "etc"
    script = (
        f"hostname {namespace} && mount --bind {etc}/hosts /etc/hosts && "
        f'mount --bind {etc}/resolv.conf /etc/resolv.conf && exec "$@"'
    )
    # (nsenter, not `ip netns exec`: that one mounts a fresh /sys without the cgroup tree
    # slurmd needs even with proctrack/linuxproc)
    return [
        "nsenter",
        f"--net=/run/netns/{namespace}",
        "unshare",
        "--uts",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "node",
        *cmd,
    ]


def _start_daemons(layout: Layout, cluster: LocalCluster, timeout_s: float) -> None:
    root, munge_dir = layout.root, layout.root / "munge"
    _spawn(
        layout,
        "munged",
        _in_namespace(
            layout,
            layout.ctl_name,
            _sbin_path("munged"),
            "--foreground",
            "--force",
            f"--socket={munge_dir}/munge.socket",
            f"--key-file={munge_dir}/munge.key",
            f"--pid-file={root}/run/munged.pid",
            f"--log-file={root}/log/munged.log",
            f"--seed-file={munge_dir}/munged.seed",
        ),
    )
    _wait_for(
        lambda: (munge_dir / "munge.socket").exists(), timeout_s=timeout_s, what="the munge socket", cluster=cluster
    )
    _spawn(
        layout,
        "slurmctld",
        _in_namespace(layout, layout.ctl_name, _sbin_path("slurmctld"), "-D", "-c", "-i", "-f", str(layout.conf)),
    )
    _wait_for(
        lambda: cluster.run("scontrol", "ping", check=False, timeout=10).returncode == 0,
        timeout_s=timeout_s,
        what="slurmctld to answer",
        cluster=cluster,
    )
    for node in layout.node_names:
        (root / "spool" / node).mkdir(exist_ok=True)
        _spawn(
            layout,
            f"slurmd-{node}",
            _in_namespace(layout, node, _sbin_path("slurmd"), "-D", "-f", str(layout.conf), "-N", node),
        )
    cluster.wait_until_idle(timeout_s=timeout_s)


def _sbin_path(name: str) -> str:
    path = _which(name)
    if path is None:
        raise ClusterError(f"{name} not found")
    return path


def _cluster(layout: Layout) -> LocalCluster:
    return LocalCluster(
        root=layout.root,
        node_name=layout.node_name(1),
        cpus=layout.cpus_per_node,
        conf=layout.conf,
        layout=layout,
        node_names=layout.node_names,
    )


def _daemon_pids(root: Path) -> list[int]:
    """The live daemons `up` started (pid files of ours, checked against /proc)."""
    pids = []
    for path in (root / "run").glob("*.daemon"):
        pid = int(path.read_text().split()[0])
        if _is_alive(pid):
            pids.append(pid)
    return pids


def _is_alive(pid: int) -> bool:
    return not _is_zombie(Path(f"/proc/{pid}"))  # (gone counts as a zombie there)


def _is_running(layout: Layout) -> bool:
    expected = 2 + layout.nodes  # munged, slurmctld, a slurmd per node
    return len(_daemon_pids(layout.root)) >= expected and all(_netns_exists(n) for n in layout.namespaces)


def _check_can_run() -> None:
    """Root, the namespace tools and SLURM (installed here when missing); else SlurmUnavailable."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("a cluster in network namespaces needs root (ip netns, slurmd)")
    for tool in ("ip", "nsenter", "unshare", "mount"):
        if shutil.which(tool) is None:
            raise SlurmUnavailable(f"{tool} is missing (Debian packages iproute2, util-linux, mount)")
    probe = _sh("unshare", "--net", "--uts", "--mount", "true", check=False)
    if probe.returncode != 0:  # e.g. a container without CAP_SYS_ADMIN
        raise SlurmUnavailable(f"cannot create network namespaces here: {probe.stderr.strip()}")
    ensure_slurm_installed()


def up(
    nodes: int = 2,
    name: str = DEFAULT_NAME,
    state_dir: str | Path | None = None,
    cpus_per_node: int | None = None,
    timeout_s: float = 60,
) -> LocalCluster:
    """Start (or find running) the cluster NAME with `nodes` nodes; return it once all are idle."""
    _check_name(name)
    if nodes < 1:
        raise ClusterError(f"--nodes must be at least 1 (got {nodes})")
    _check_can_run()
    root = Path(state_dir or default_state_dir(name)).resolve()
    existing = Layout.load(root)
    cpus_per_node = cpus_per_node or max(1, (os.cpu_count() or 1) // nodes)
    if existing and _is_running(existing):
        if (existing.nodes, existing.cpus_per_node) != (nodes, cpus_per_node):
            raise ClusterError(
                f"cluster {name} is already up with {existing.nodes} node(s) x "
                f"{existing.cpus_per_node} CPU(s): run `down` first"
            )
        return _cluster(existing)
    down(name, root)  # a half-made or dead cluster: start from nothing
    layout = Layout(name=name, root=root, subnet=_free_subnet(name), nodes=nodes, cpus_per_node=cpus_per_node)
    cluster = _cluster(layout)
    try:
        _make_folders(layout)
        layout.save()
        _write_conf(layout)
        _make_network(layout)
        _start_daemons(layout, cluster, timeout_s)
    except BaseException:
        logs = cluster.logs() if root.exists() else ""
        down(name, root)
        if logs:
            print(logs, file=sys.stderr)
        raise
    return cluster


def _terminate(pids: list[int], grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL whatever still lives after grace_s."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while (pids := [p for p in pids if _is_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pids:
            return


def _layout_for_down(name: str, root: Path) -> Layout:
    """The saved layout, else one from the name alone (its namespaces and bridge are found by name)."""
    saved = Layout.load(root)
    if saved:
        return saved
    count = sum(1 for ns in _netns_list() if re.fullmatch(rf"{re.escape(name)}-node\d+", ns))
    return Layout(name=name, root=root, subnet="", nodes=count, cpus_per_node=1)


def down(name: str = DEFAULT_NAME, state_dir: str | Path | None = None) -> None:
    """Stop every process of the cluster, delete its namespaces, links and state folder."""
    _check_name(name)
    root = Path(state_dir or default_state_dir(name)).resolve()
    layout = _layout_for_down(name, root)
    if layout.conf.exists() and _daemon_pids(root):
        cluster = _cluster(layout)
        cluster.run("scancel", "--full", "--quiet", check=False, timeout=10)
    node_pids = [pid for node in layout.node_names for pid in _netns_pids(node)]
    _terminate(node_pids)  # slurmd, its steps and every job process on the nodes
    _terminate(_netns_pids(layout.ctl_name))  # slurmctld, munged
    # host-side clients (sbatch, srun) and anything else carrying our SLURM_CONF
    _terminate(_daemon_pids(root) + _cluster(layout).leftover_pids())
    # A veth pair goes with either end: the host ends first, then the bridge and namespaces
    # (deleting a namespace first would remove the host ends in the background, racing us).
    for link in [layout.link_of(ns) for ns in layout.namespaces] + [layout.bridge]:
        if _link_exists(link):
            _sh("ip", "link", "delete", link)
    for node in layout.namespaces:
        if _netns_exists(node):
            _sh("ip", "netns", "delete", node)
    shutil.rmtree(root, ignore_errors=True)


def leftovers(name: str, state_dir: str | Path | None = None) -> list[str]:
    """What of the cluster NAME still exists on this machine (empty after `down`)."""
    root = Path(state_dir or default_state_dir(name)).resolve()
    found = [f"namespace {ns}" for ns in _netns_list() if re.fullmatch(rf"{re.escape(name)}-(ctl|node\d+)", ns)]
    links = _sh("ip", "-o", "link", "show", check=False).stdout
    found += [f"link {m}" for m in re.findall(rf"^\d+: ({re.escape(name)}-(?:br|v\d+))[@:]", links, re.MULTILINE)]
    found += [f"process {pid}" for pid in _cluster(_layout_for_down(name, root)).leftover_pids()]
    if root.exists():
        found.append(f"folder {root}")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="launch/local-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--nodes", type=int, default=2, help="number of nodes (up; default 2)")
    parser.add_argument(
        "--cpus-per-node", type=int, default=None, help="CPUs of each node (up; default: this machine's CPUs / nodes)"
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"cluster name: prefix of its nodes, namespaces and links (default {DEFAULT_NAME})",
    )
    parser.add_argument("--state", default=None, help="state folder (default $TMPDIR/musicgan-cluster-NAME)")
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RuntimeError as exc:  # ClusterError, SlurmUnavailable, a daemon that did not start
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def _cmd_up(args) -> int:
    started = time.monotonic()
    cluster = up(args.nodes, args.name, args.state, args.cpus_per_node)
    layout = cluster.layout
    print(
        f"[local-cluster] {layout.nodes} node(s) x {layout.cpus_per_node} CPU(s) up in "
        f"{time.monotonic() - started:.1f} s: "
        + ", ".join(f"{layout.node_name(i)} ({layout.node_addr(i)})" for i in range(1, layout.nodes + 1)),
        file=sys.stderr,
    )
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


def _cmd_down(args) -> int:
    down(args.name, args.state)
    left = leftovers(args.name, args.state)
    if left:
        raise ClusterError("still there after down: " + ", ".join(left))
    print(f"[local-cluster] {args.name}: down, nothing left", file=sys.stderr)
    return 0


def _cmd_status(args) -> int:
    root = Path(args.state or default_state_dir(args.name)).resolve()
    layout = Layout.load(root)
    if not layout or not _is_running(layout):
        print(f"[local-cluster] {args.name}: not running", file=sys.stderr)
        return 1
    print(_cluster(layout).run("sinfo", "-N", "-o", "%N %t %c").stdout, end="")
    print(f"export SLURM_CONF={layout.conf}")
    return 0


COMMANDS = {"up": _cmd_up, "down": _cmd_down, "status": _cmd_status}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
