"""The sbatch scripts on a real SLURM: a private one-node cluster (tests/slurm_cluster.py) is
installed and started once per session; the real scripts are submitted with `sbatch`.

(a) a 2-rank CPU training job completes and leaves a checkpoint;
(b) a training job sent the preemption signal mid-run checkpoints, requeues itself, resumes,
    and ends with exactly the weights of the uninterrupted run (a);
(c) an array prepare job plus its dependent merge gives the manifest of a one-process prepare.
Skipped, with the reason, where SLURM cannot be installed (not root, no apt).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, SlurmUnavailable, free_port, start_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STEPS = 40  # ~0.25 s a step with 2 CPU ranks: the stop signal lands well before the end
SIGNAL_AFTER_STEP = 5
PREPARE_ARGS = ["--corpus", "music21:bach", "--limit", "12", "--split-ratios", "0.5,0.25,0.25", "--shard-size", "2"]
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> SlurmCluster:
    """A running private SLURM cluster (slurmctld + slurmd + munged) for this session."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        pytest.skip(f"no SLURM here: {exc}")
    print(
        f"\n[slurm] cluster up in {cluster.startup_s:.1f} s (install included), node {cluster.node_name}, "
        f"{cluster.cpus} CPUs, SLURM_CONF={cluster.conf}"
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        leftovers = cluster.leftover_pids()
        assert not leftovers, "processes of the test cluster still running:\n" + cluster.describe_pids(leftovers)


def _job_env(cluster: SlurmCluster) -> dict[str, str]:
    # Jobs inherit the submitting environment (sbatch --export=ALL): this interpreter, this repo.
    return dict(cluster.env, MUSICGAN_PYTHON=sys.executable, MUSICGAN_ROOT=str(ROOT))


def _train_args(shards: Path, run_dir: Path, steps: int = TRAIN_STEPS) -> list[str]:
    """The debug preset for `steps` steps, logging every step, no samples (both SLURM test files)."""
    return [
        "--preset",
        "debug",
        "--data",
        str(shards),
        "--run-dir",
        str(run_dir),
        "--max-steps",
        str(steps),
        "--set",
        "train.epochs=1000",
        "--set",
        "log.sample_every=0",
        "--set",
        "log.progress=false",
        "--set",
        "log.interval=1",
    ]


def _submit_train(cluster: SlurmCluster, shards: Path, run_dir: Path, log: Path, name: str) -> str:
    # 2 CPU ranks on the one node (CPU-only partition: processes per node from --ntasks-per-node).
    options = ["--ntasks-per-node=2", "--cpus-per-task=1", "--time=15", f"--job-name={name}", f"--output={log}"]
    # A free rendezvous port of our own: other test sessions may run torchrun on this host too.
    env = dict(_job_env(cluster), MUSICGAN_RDZV_PORT=str(free_port()))
    return cluster.sbatch(
        ROOT / "slurm" / "train.sbatch", *_train_args(shards, run_dir), options=options, env=env, cwd=ROOT
    )


def _final_checkpoint(run_dir: Path) -> dict:
    import torch

    name = (run_dir / "checkpoints" / "latest").read_text().strip()
    return torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)


def _describe(cluster: SlurmCluster, job_id: str, log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no job log)"
    return f"job {job_id}: {cluster.job_info(job_id)}\n--- job log tail:\n{text[-4000:]}"


@pytest.fixture(scope="module")
def uninterrupted_run(slurm_cluster, bach_shards, tmp_path_factory) -> dict:
    """One training job run to the end: its run dir, job log and final job info."""
    work = tmp_path_factory.mktemp("slurm_train_full")
    run_dir, log = work / "run", work / "job.out"
    started = time.monotonic()
    job_id = _submit_train(slurm_cluster, bach_shards, run_dir, log, "musicgan-full")
    info = slurm_cluster.wait_for_job(job_id, timeout_s=JOB_TIMEOUT_S)
    print(f"\n[slurm] uninterrupted {TRAIN_STEPS}-step job took {time.monotonic() - started:.1f} s")
    return {"job_id": job_id, "run_dir": run_dir, "log": log, "info": info}


def test_train_job_completes_with_checkpoint(slurm_cluster, uninterrupted_run):
    run = uninterrupted_run
    info, log, run_dir = run["info"], run["log"], run["run_dir"]
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", _describe(slurm_cluster, run["job_id"], log)
    text = log.read_text()
    assert "1 node(s) x 2 rank(s)" in text, text
    assert "OMP_NUM_THREADS=1" in text, text
    assert (run_dir / "finished.json").is_file(), text[-3000:]
    checkpoint = _final_checkpoint(run_dir)
    assert checkpoint["step"] == TRAIN_STEPS
    assert checkpoint["world_size"] == 2  # really two ranks under torchrun, not one process
    assert checkpoint["generator"] and checkpoint["discriminator"]
    # --resume is always passed: a fresh run dir says so instead of failing.
    assert "no checkpoint to resume: starting fresh" in text


def _log_step(run_dir: Path) -> int:
    """The newest step in the trainer's log.jsonl (0 before the first entry)."""
    path = run_dir / "log.jsonl"
    if not path.exists():
        return 0
    step = 0
    for line in path.read_text().splitlines():
        try:
            step = max(step, int(json.loads(line).get("step", 0)))
        except ValueError:
            continue  # a line being written right now
    return step


def test_preempted_job_requeues_resumes_and_matches_uninterrupted(
    slurm_cluster, bach_shards, uninterrupted_run, tmp_path
):
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    # A finished.json of an earlier, shorter invocation (the run is being extended) must not
    # stop the requeue: it is not this run's.
    run_dir.mkdir()
    (run_dir / "finished.json").write_text('{"step": 20}\n')
    started = time.monotonic()
    job_id = _submit_train(slurm_cluster, bach_shards, run_dir, log, "musicgan-preempt")

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while _log_step(run_dir) < SIGNAL_AFTER_STEP:
        state = slurm_cluster.job_state(job_id)
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), _describe(slurm_cluster, job_id, log)
        assert time.monotonic() < deadline, _describe(slurm_cluster, job_id, log)
        time.sleep(0.2)
    signalled_at = _log_step(run_dir)
    # What SLURM does `--signal=B:USR2@180` before the time limit: USR2 to the batch script only.
    slurm_cluster.run("scancel", "--signal=USR2", "--batch", job_id)

    info = slurm_cluster.wait_for_job(job_id, timeout_s=JOB_TIMEOUT_S)
    text = log.read_text()
    print(f"\n[slurm] preempted job (signal after step {signalled_at}) took {time.monotonic() - started:.1f} s")
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", _describe(slurm_cluster, job_id, log)
    assert info["Restarts"] == "1", _describe(slurm_cluster, job_id, log)

    stopped = re.search(r"\[musicgan\] stopped at step (\d+) \([^)]*signal SIGUSR2[^)]*\)", text)
    assert stopped, f"the trainer did not report a signal stop:\n{text[-4000:]}"
    stop_step = int(stopped.group(1))
    assert signalled_at <= stop_step < TRAIN_STEPS, text[-4000:]
    # Output appended across the requeue: both runs of the job are in one log, in order.
    assert text.index("got SIGUSR2") < text.index("requeueing job") < text.index("(restart 1)"), text[-4000:]
    assert f"resuming from {run_dir / 'checkpoints' / f'step-{stop_step:08d}.pt'}" in text, text[-4000:]
    assert json.loads((run_dir / "finished.json").read_text())["step"] == TRAIN_STEPS

    resumed, reference = _final_checkpoint(run_dir), _final_checkpoint(uninterrupted_run["run_dir"])
    assert resumed["step"] == reference["step"] == TRAIN_STEPS
    for network in ("generator", "discriminator"):
        assert resumed[network].keys() == reference[network].keys()
        for name, tensor in reference[network].items():
            assert resumed[network][name].equal(tensor), f"{network}.{name} differs after stop/requeue/resume"


def test_musegan_train_job_completes_with_the_familys_networks(slurm_cluster, bach_shards, tmp_path):
    """A survey family through train.sbatch unchanged: a 2-rank `musegan-debug` job completes
    and its checkpoint holds MuseGAN's networks (generator and critic), not C-RNN-GAN's."""
    from musicgan.training.families.musegan import NETWORKS

    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    args = [*_train_args(bach_shards, run_dir)]
    args[args.index("debug")] = "musegan-debug"
    args[args.index(str(TRAIN_STEPS))] = "6"
    options = [
        "--ntasks-per-node=2",
        "--cpus-per-task=1",
        "--time=15",
        "--job-name=musicgan-musegan",
        f"--output={log}",
    ]
    env = dict(_job_env(slurm_cluster), MUSICGAN_RDZV_PORT=str(free_port()))
    job_id = slurm_cluster.sbatch(ROOT / "slurm" / "train.sbatch", *args, options=options, env=env, cwd=ROOT)
    info = slurm_cluster.wait_for_job(job_id, timeout_s=JOB_TIMEOUT_S)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", _describe(slurm_cluster, job_id, log)
    assert (run_dir / "finished.json").is_file(), log.read_text()[-3000:]
    checkpoint = _final_checkpoint(run_dir)
    assert checkpoint["step"] == 6 and checkpoint["world_size"] == 2
    assert checkpoint["config"]["model"]["name"] == "musegan"
    assert set(checkpoint["optimizers"]) == {"generator", "critic"}
    # (The top-level "discriminator" key is the format's alias, empty for a family without one.)
    assert set(checkpoint["networks"]) == set(NETWORKS) and all(checkpoint["networks"][n] for n in NETWORKS)


def test_train_job_as_the_readme_writes_it_starts_on_a_small_node(slurm_cluster, bach_shards, tmp_path):
    """No resource options: the header's defaults must fit a node of any size (this one has
    2 CPUs), not pend for ever with reason PartitionConfig."""
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    env = dict(_job_env(slurm_cluster), MUSICGAN_RDZV_PORT=str(free_port()))
    job_id = slurm_cluster.sbatch(
        ROOT / "slurm" / "train.sbatch",
        "--preset",
        "debug",
        "--data",
        str(bach_shards),
        "--run-dir",
        str(run_dir),
        "--max-steps",
        "2",
        "--set",
        "log.sample_every=0",
        "--set",
        "log.progress=false",
        options=[f"--output={log}"],
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while slurm_cluster.job_state(job_id) == "PENDING":
        reason = slurm_cluster.job_info(job_id).get("Reason", "")
        assert time.monotonic() < deadline and reason != "PartitionConfig", _describe(slurm_cluster, job_id, log)
        time.sleep(0.5)
    info = slurm_cluster.wait_for_job(job_id, timeout_s=JOB_TIMEOUT_S)
    assert info["JobState"] == "COMPLETED", _describe(slurm_cluster, job_id, log)
    assert _final_checkpoint(run_dir)["step"] == 2


def test_rerunning_one_array_task_needs_the_arrays_task_count(slurm_cluster, tmp_path):
    """`sbatch --array=7` alone is refused (it would be "task 0 of 1" and overwrite task 0's
    output); with MUSICGAN_NUM_TASKS=8 it is task 7 of 8 and writes only its own slice."""
    out = tmp_path / "shards"
    script, args = ROOT / "slurm" / "prepare.sbatch", [*PREPARE_ARGS, "--out", str(out)]
    refused_log, rerun_log = tmp_path / "refused.out", tmp_path / "rerun.out"
    refused = slurm_cluster.sbatch(
        script,
        *args,
        options=["--cpus-per-task=1", "--array=7", f"--output={refused_log}"],
        env=_job_env(slurm_cluster),
        cwd=ROOT,
    )
    info = slurm_cluster.wait_for_job(refused, timeout_s=JOB_TIMEOUT_S)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0", _describe(slurm_cluster, refused, refused_log)
    assert "MUSICGAN_NUM_TASKS=N" in refused_log.read_text()
    assert not out.exists() or not list(out.glob("manifest-p*.json"))

    rerun = slurm_cluster.sbatch(
        script,
        *args,
        options=["--cpus-per-task=1", "--array=7", f"--output={rerun_log}"],
        env=dict(_job_env(slurm_cluster), MUSICGAN_NUM_TASKS="8"),
        cwd=ROOT,
    )
    info = slurm_cluster.wait_for_job(rerun, timeout_s=JOB_TIMEOUT_S)
    assert info["JobState"] == "COMPLETED", _describe(slurm_cluster, rerun, rerun_log)
    assert "array task 7 of 8" in rerun_log.read_text()
    assert [p.name for p in out.glob("manifest-p*.json")] == ["manifest-p0007.json"]

    # Now --array=0 alone: the task manifest of an 8-task array is there, so it is refused too.
    again_log = tmp_path / "again.out"
    again = slurm_cluster.sbatch(
        script,
        *args,
        options=["--cpus-per-task=1", "--array=0", f"--output={again_log}"],
        env=_job_env(slurm_cluster),
        cwd=ROOT,
    )
    info = slurm_cluster.wait_for_job(again, timeout_s=JOB_TIMEOUT_S)
    assert info["JobState"] == "FAILED" and "manifest-p0007.json" in again_log.read_text(), again_log.read_text()
    assert [p.name for p in out.glob("manifest-p*.json")] == ["manifest-p0007.json"]


def _tar_members(path: Path) -> int:
    with tarfile.open(path) as tar:
        return len({Path(m.name).name.split(".")[0] for m in tar.getmembers() if m.isfile()})


def test_array_prepare_matches_one_process_prepare(slurm_cluster, tmp_path):
    """3 array tasks + the dependent merge == one `musicgan prepare` process on the same input."""
    env = _job_env(slurm_cluster)
    one_process_out, out = tmp_path / "one-process", tmp_path / "array"
    started = time.monotonic()
    # The reference prepare runs beside the array job (same CLI, no SLURM).
    reference_proc = subprocess.Popen(
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
            "3",
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
    merge = slurm_cluster.wait_for_job(merge_id, timeout_s=JOB_TIMEOUT_S)
    reference_output, _ = reference_proc.communicate(timeout=JOB_TIMEOUT_S)
    assert reference_proc.returncode == 0, reference_output
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(tmp_path.glob("*.out")))
    print(f"\n[slurm] array prepare (3 tasks) + merge took {time.monotonic() - started:.1f} s")
    assert merge["JobState"] == "COMPLETED", f"merge job: {merge}\n{logs}"
    tasks = slurm_cluster.run("scontrol", "-o", "show", "job", array_id).stdout.splitlines()
    assert len(tasks) == 3 and all("JobState=COMPLETED" in t for t in tasks), "\n".join(tasks) + logs
    for index in range(3):
        assert f"array task {index} of 3" in logs, logs

    assert_same_prepared_shards(out, one_process_out, num_tasks=3)


def assert_same_prepared_shards(out: Path, one_process_out: Path, num_tasks: int) -> None:
    """The merged shards of an array prepare in `out` hold exactly the songs, splits and skips
    of the one-process prepare in `one_process_out` (of PREPARE_ARGS), each song once."""
    reference = json.loads((one_process_out / "manifest.json").read_text())
    merged = json.loads((out / "manifest.json").read_text())
    entries = lambda manifest: sorted((e["path"], e["split"]) for e in manifest["included"])  # noqa: E731
    assert len(entries(reference)) == 12
    assert entries(merged) == entries(reference)
    assert merged["skipped"] == reference["skipped"]
    for split in ("train", "valid", "test"):
        assert merged["splits"][split]["songs"] == reference["splits"][split]["songs"]
        files = merged["splits"][split]["files"]
        assert len(files) == len(set(files)), files  # task shards do not collide
        assert all(re.search(rf"-p000[0-{num_tasks - 1}]-", name) for name in files), files
        # Every song of the split is really in the listed shards, once.
        assert sum(_tar_members(out / name) for name in files) == merged["splits"][split]["songs"]
    # No shard left behind that the manifest does not list (e.g. a partial temp file).
    listed = {name for split in merged["splits"].values() for name in split["files"]}
    assert {p.name for p in out.glob("*.tar*")} == listed


def test_tune_job_runs_a_sweep_on_a_ray_cluster_in_the_allocation(slurm_cluster, bach_shards, tmp_path):
    """tune.sbatch starts a Ray head in the job, runs a one-trial ASHA sweep against it, stops Ray."""
    storage, log = tmp_path / "sweep", tmp_path / "job.out"
    started = time.monotonic()
    job_id = slurm_cluster.sbatch(
        ROOT / "slurm" / "tune.sbatch",
        "--space",
        "crnngan",
        "--preset",
        "debug",
        "--scheduler",
        "asha",
        "--num-samples",
        "1",
        "--max-steps",
        "3",
        "--eval-songs",
        "4",
        "--quiet",
        "--data",
        str(bach_shards),
        "--storage",
        str(storage),
        options=[f"--cpus-per-task={slurm_cluster.cpus}", "--time=15", f"--output={log}"],
        env=_job_env(slurm_cluster),
        cwd=ROOT,
    )
    info = slurm_cluster.wait_for_job(job_id, timeout_s=JOB_TIMEOUT_S)
    print(f"\n[slurm] tune job (Ray head + 1 trial) took {time.monotonic() - started:.1f} s")
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", _describe(slurm_cluster, job_id, log)
    text = log.read_text()
    assert "Ray cluster up: running tune.search" in text and "tune.search ended with status 0" in text, text[-4000:]
    best = json.loads((storage / "best_config.json").read_text())
    assert best, "empty best config"
    # The trial really ran through Ray: its row is in the results table.
    rows = (storage / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and ",finished," in rows[1], rows
    # Ray is gone with the job: no raylet or GCS left from this cluster.
    leftovers = slurm_cluster.wait_for_no_leftovers()
    assert not leftovers, "processes outlived the tune job:\n" + slurm_cluster.describe_pids(leftovers)
