"""The sbatch scripts on a real two-node SLURM cluster on this machine (tests/local_cluster.py:
one network + UTS namespace per node, 1 CPU each), started once for this module.

(a) a 2-node training job (one torchrun per node, world size 2) ends with exactly the weights
    of a 1-node 2-rank torchrun of the same config;
(b) the 2-node job sent the preemption warning checkpoints, requeues, resumes and ends with
    the weights of (a);
(c) killing the job's processes on one node fails the job well before the collective timeout,
    and a resubmission resumes from the last periodic checkpoint and ends with (a)'s weights;
(d) tune.sbatch runs its trials on both nodes and writes best_config.json;
(e) a 2-task array prepare whose tasks run on different nodes merges into the shards of a
    one-process prepare.
Besides: a second `up` changes nothing, the nodes reach nothing outside the cluster, `down`
also removes a half-made cluster, and a bad name is a one-line CLI error.
Skipped, with the reason, unless root with ip/unshare/nsenter and installable SLURM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import local_cluster
import pytest
from slurm_cluster import SlurmUnavailable
from test_slurm import (
    PREPARE_ARGS,
    ROOT,
    _describe,
    _final_checkpoint,
    _job_env,
    _log_step,
    assert_same_prepared_shards,
)
from test_slurm import _train_args as single_node_train_args

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TRAIN_STEPS = 100  # 4-7 s of steps on 2 nodes x 1 CPU: room to interrupt mid-run
CHECKPOINT_EVERY = 20
SIGNAL_AFTER_STEP = 10
KILL_AFTER_STEP = CHECKPOINT_EVERY + 5
COLLECTIVE_TIMEOUT_S = 60  # dist.timeout_s of these runs: a lost peer must not outlast it
JOB_TIMEOUT_S = 240


def _assert_same_weights(run_dir: Path, reference_dir: Path) -> None:
    ours, reference = _final_checkpoint(run_dir), _final_checkpoint(reference_dir)
    assert ours["step"] == reference["step"] == TRAIN_STEPS
    assert ours["world_size"] == reference["world_size"] == 2
    for network in ("generator", "discriminator"):
        assert ours[network].keys() == reference[network].keys()
        for name, tensor in reference[network].items():
            assert ours[network][name].equal(tensor), f"{network}.{name} differs from the reference run"


def _remove_clusters_of_dead_sessions() -> None:
    """A session killed outright (SIGKILL) cannot tear its cluster down: the next one does."""
    for namespace in local_cluster._netns_list():
        match = re.fullmatch(r"(mgt(\d+))-ctl", namespace)
        if match and not local_cluster._is_alive(int(match.group(2))):
            local_cluster.down(match.group(1))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes x 1 CPU under a name of this session's own (namespaces and links are global)."""
    if os.geteuid() == 0:
        _remove_clusters_of_dead_sessions()
    name = f"mgt{os.getpid()}"
    state = tmp_path_factory.mktemp("cluster") / "state"
    started = time.monotonic()
    try:
        running = local_cluster.up(nodes=2, name=name, state_dir=state, cpus_per_node=1)
    except SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM cluster here: {exc}")
    print(f"\n[cluster] {name}: 2 nodes up in {time.monotonic() - started:.1f} s, SLURM_CONF={running.conf}")
    try:
        yield running
    finally:
        local_cluster.down(name, state)
        left = local_cluster.leftovers(name, state)
        assert not left, f"cluster {name} left behind: {left}"


def test_up_again_is_a_no_op_and_refuses_another_size(cluster):
    daemons = sorted(local_cluster._daemon_pids(cluster.root))
    again = subprocess.run(
        [
            str(ROOT / "launch" / "local-cluster"),
            "up",
            "--nodes",
            "2",
            "--cpus-per-node",
            "1",
            "--name",
            cluster.layout.name,
            "--state",
            str(cluster.root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and again.stdout == f"export SLURM_CONF={cluster.conf}\n", again
    assert sorted(local_cluster._daemon_pids(cluster.root)) == daemons  # nothing restarted
    with pytest.raises(local_cluster.ClusterError, match="already up with 2 node"):
        local_cluster.up(nodes=3, name=cluster.layout.name, state_dir=cluster.root, cpus_per_node=1)


def test_nodes_have_their_own_hostnames_and_no_way_out(cluster):
    """Inside a node: its own hostname, the others by their cluster address, no default route,
    no DNS server, and a send to an outside address fails before any packet leaves."""
    first, second = cluster.node_names
    probe = (
        "hostname; getent hosts " + first + "; ip -4 route show default | wc -l; "
        "grep -c nameserver /etc/resolv.conf || true; "
        f'{sys.executable} -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); '
        "s.connect(('192.0.2.1', 9))\" 2>&1 | tail -n1"
    )
    result = cluster.run("srun", "--nodes=1", f"--nodelist={second}", "bash", "-c", probe, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == second, lines
    assert lines[1].split() == [cluster.layout.addr_of(first), first], lines
    assert lines[2:4] == ["0", "0"], lines
    assert "Network is unreachable" in lines[4], lines


def test_bad_cluster_name_is_a_one_line_error():
    result = subprocess.run(
        [str(ROOT / "launch" / "local-cluster"), "up", "--name", "Bad_Name"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: cluster name 'Bad_Name'") and result.stderr.count("\n") == 1, result.stderr


def test_down_removes_a_half_made_cluster(tmp_path):
    """What a crash in the middle of `up` leaves (network and munged, no slurmctld), `down` removes."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    layout = local_cluster.Layout(
        name=f"mgh{os.getpid()}",
        root=tmp_path / "state",
        subnet=local_cluster._free_subnet("half"),
        nodes=2,
        cpus_per_node=1,
    )
    try:
        local_cluster._make_folders(layout)
        layout.save()
        local_cluster._make_network(layout)
        inside = local_cluster._spawn(
            layout, "munged", local_cluster._in_namespace(layout, layout.ctl_name, "sleep", "600")
        )  # a process inside, as munged would be
        assert len(local_cluster.leftovers(layout.name, layout.root)) >= 4  # namespaces, links, folder
    finally:
        local_cluster.down(layout.name, layout.root)
    assert local_cluster.leftovers(layout.name, layout.root) == []
    assert not local_cluster._is_alive(inside)


def _train_args(shards: Path, run_dir: Path) -> list[str]:
    return single_node_train_args(shards, run_dir, steps=TRAIN_STEPS) + [
        "--set",
        f"log.checkpoint_every={CHECKPOINT_EVERY}",
        "--set",
        f"dist.timeout_s={COLLECTIVE_TIMEOUT_S}",
    ]


def _submit_train(cluster, shards: Path, run_dir: Path, log: Path) -> str:
    options = ["--nodes=2", "--cpus-per-task=1", "--time=10", f"--output={log}"]
    return cluster.sbatch(
        ROOT / "slurm" / "train.sbatch", *_train_args(shards, run_dir), options=options, env=_job_env(cluster), cwd=ROOT
    )


def _wait_for_step(cluster, job_id: str, run_dir: Path, log: Path, step: int) -> int:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (reached := _log_step(run_dir)) < step:
        assert cluster.job_state(job_id) in ("PENDING", "RUNNING", "CONFIGURING"), _describe(cluster, job_id, log)
        assert time.monotonic() < deadline, _describe(cluster, job_id, log)
        time.sleep(0.1)
    return reached


def _wait_completed(cluster, job_id: str, log: Path) -> dict:
    info = cluster.wait_for_job(job_id, timeout_s=JOB_TIMEOUT_S)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", _describe(cluster, job_id, log)
    return info


@pytest.fixture(scope="module")
def two_node_run(cluster, bach_shards, tmp_path_factory) -> dict:
    """The 2-node job run to the end, and beside it a 1-node 2-rank torchrun of the same config."""
    work = tmp_path_factory.mktemp("two_node")
    run_dir, log, reference_dir = work / "run", work / "job.out", work / "one-node"
    started = time.monotonic()
    job_id = _submit_train(cluster, bach_shards, run_dir, log)
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "musicgan",
            "train",
            *_train_args(bach_shards, reference_dir),
            "--resume",
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    info = _wait_completed(cluster, job_id, log)
    print(f"\n[cluster] 2-node {TRAIN_STEPS}-step job + 1-node reference took {time.monotonic() - started:.1f} s")
    return {"job_id": job_id, "run_dir": run_dir, "log": log, "info": info, "reference_dir": reference_dir}


def test_two_node_job_matches_one_node_two_ranks(cluster, two_node_run):
    run = two_node_run
    text = run["log"].read_text()
    assert "2 node(s) x 1 rank(s)" in text and f"master {cluster.node_names[0]}:" in text, text[-3000:]
    assert run["info"]["NodeList"] == f"{cluster.layout.name}-node[1-2]", run["info"]
    # world size 2 from one rank per node: the torchrun agents of both nodes met in one group
    _assert_same_weights(run["run_dir"], run["reference_dir"])


def test_preempted_two_node_job_requeues_and_matches(cluster, bach_shards, two_node_run, tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    started = time.monotonic()
    job_id = _submit_train(cluster, bach_shards, run_dir, log)
    signalled_at = _wait_for_step(cluster, job_id, run_dir, log, SIGNAL_AFTER_STEP)
    cluster.run("scancel", "--signal=USR2", "--batch", job_id)
    info = _wait_completed(cluster, job_id, log)
    print(
        f"\n[cluster] preempted 2-node job (signal after step {signalled_at}) took {time.monotonic() - started:.1f} s"
    )
    text = log.read_text()
    assert info["Restarts"] == "1", _describe(cluster, job_id, log)
    assert text.index("got SIGUSR2") < text.index("requeueing job") < text.index("(restart 1)"), text[-4000:]
    assert "resuming from" in text and "stopped at step" in text, text[-4000:]
    _assert_same_weights(run_dir, two_node_run["run_dir"])


def _job_pids_on(cluster, node: str, job_id: str) -> list[int]:
    """The job's processes on `node` (torchrun agent and ranks; not slurmd or slurmstepd)."""
    marker = f"SLURM_JOB_ID={job_id}".encode()
    pids = []
    for pid in cluster.node_pids(node):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_losing_one_node_fails_fast_and_resubmission_resumes(cluster, bach_shards, two_node_run, tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    job_id = _submit_train(cluster, bach_shards, run_dir, log)
    _wait_for_step(cluster, job_id, run_dir, log, KILL_AFTER_STEP)
    victims = _job_pids_on(cluster, cluster.node_names[1], job_id)
    assert victims, _describe(cluster, job_id, log)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    info = cluster.wait_for_job(job_id, timeout_s=COLLECTIVE_TIMEOUT_S)
    took = time.monotonic() - killed_at
    print(f"\n[cluster] job failed {took:.1f} s after its processes on one node were killed")
    assert info["JobState"] == "FAILED", _describe(cluster, job_id, log)  # srun --kill-on-bad-exit
    assert not (run_dir / "finished.json").exists()
    last = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert last != f"step-{TRAIN_STEPS:08d}.pt", "the run ended before the kill: nothing was tested"

    again = _submit_train(cluster, bach_shards, run_dir, log)
    _wait_completed(cluster, again, log)
    assert f"resuming from {run_dir / 'checkpoints' / last}" in log.read_text(), log.read_text()[-4000:]
    _assert_same_weights(run_dir, two_node_run["run_dir"])


def test_tune_job_runs_trials_on_both_nodes(cluster, bach_shards, tmp_path):
    storage, log = tmp_path / "sweep", tmp_path / "job.out"
    started = time.monotonic()
    job_id = cluster.sbatch(
        ROOT / "slurm" / "tune.sbatch",
        "--space",
        "crnngan",
        "--preset",
        "debug",
        "--scheduler",
        "asha",
        "--num-samples",
        "2",
        "--max-steps",
        "3",
        "--eval-songs",
        "4",
        "--quiet",
        "--data",
        str(bach_shards),
        "--storage",
        str(storage),
        options=["--nodes=2", "--cpus-per-task=1", "--time=10", f"--output={log}"],
        env=_job_env(cluster),
        cwd=ROOT,
    )
    _wait_completed(cluster, job_id, log)
    print(f"\n[cluster] 2-node tune job (2 trials) took {time.monotonic() - started:.1f} s")
    text = log.read_text()
    assert f"Ray worker on {cluster.node_names[1]}" in text, text[-4000:]
    assert json.loads((storage / "best_config.json").read_text()), "empty best config"
    header, *rows = (storage / "results.csv").read_text().strip().splitlines()
    hosts = [row.split(",")[header.split(",").index("host")] for row in rows]
    assert sorted(hosts) == cluster.node_names, (storage / "results.csv").read_text()
    left = cluster.wait_for_no_leftovers()
    assert not left, "processes outlived the tune job:\n" + cluster.describe_pids(left)


def test_array_prepare_on_two_nodes_matches_one_process(cluster, tmp_path):
    env = _job_env(cluster)
    one_process_out, out = tmp_path / "one-process", tmp_path / "array"
    started = time.monotonic()
    reference = subprocess.Popen(
        [sys.executable, "-m", "musicgan", "prepare", *PREPARE_ARGS, "--workers", "1", "--out", str(one_process_out)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    submit = subprocess.run(
        [
            str(ROOT / "slurm" / "submit-prepare"),
            "--cpus-per-task=1",
            f"--output={tmp_path}/%x-%j.out",
            "2",
            *PREPARE_ARGS,
            "--out",
            str(out),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, submit.stderr
    array_id, merge_id = submit.stdout.split()
    merge = cluster.wait_for_job(merge_id, timeout_s=JOB_TIMEOUT_S)
    output, _ = reference.communicate(timeout=JOB_TIMEOUT_S)
    assert reference.returncode == 0, output
    print(f"\n[cluster] 2-task array prepare + merge took {time.monotonic() - started:.1f} s")
    logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(tmp_path.glob("*.out")))
    assert merge["JobState"] == "COMPLETED", f"merge job: {merge}\n{logs}"
    tasks = cluster.run("scontrol", "-o", "show", "job", array_id).stdout.splitlines()
    hosts = sorted(item.split("=", 1)[1] for task in tasks for item in task.split() if item.startswith("BatchHost="))
    assert hosts == cluster.node_names, "\n".join(tasks)  # one task on each node
    assert_same_prepared_shards(out, one_process_out, num_tasks=2)
