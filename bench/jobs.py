"""Jobs: submit-to-first-line latency against Ray Jobs, and what checkpoint sync costs a job.

Usage: .venv/bin/python bench/jobs.py [--quick]

One run starts `shipyard up` (SQLite, local compute, SHIPYARD_CHECKPOINT_SYNC_S=10) and then a
Ray head (`ray start --head` on loopback with the dashboard), one after the other, and measures:

1. Submit to first user line, jobs one at a time: the time from just before the submit call
   to the moment the first line printed by the user's script (its first statement) arrives on
   a followed log stream opened right after the submit returned. Shipyard: `POST .../jobs`,
   then `GET .../jobs/{name}/logs?follow=true`, re-opened every 50 ms while it ends before the
   job has a log. Ray: `JobSubmissionClient.submit_job(entrypoint="python hello.py",
   runtime_env={"working_dir": ...})`, then `tail_job_logs`. For the platform's own
   interpreter (Shipyard `inherit`, Ray `working_dir` only) and for an environment with a
   requirement (`six==1.16.0`: a Shipyard `requirements.txt`, Ray `pip` and `uv`), each after
   one untimed warm-up job that builds and caches that environment (its time is shown).
   Also the `inherit` jobs through the SDK (`jobs.submit`, then `job.logs(follow=True)`).
2. Checkpoint sync: a job on `cpu.small` (one pinned CPU) doing fixed CPU work for 40 s and
   writing a fresh 100 MiB checkpoint (temp name, then rename) into SM_CHECKPOINT_DIR every
   10 s, with `checkpointing` on and off (off, on, on, off, so each runs on both CPUs;
   --quick: off, on):
   work iterations per second either way, when each checkpoint lands in the store, and how
   long each sync takes (from the kernel's atime of the file, i.e. when the server started
   reading it, to the version's `created_at`).

SageMaker cannot run here; its documented start-up figures are printed as text only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))  # tests.support
from _harness import ShipyardServer, console, free_port, ratio_table, running, wait_http
from tests.support.processes import end_session

JOBS, QUICK_JOBS = 20, 5
CHECKPOINT_RUN_S, QUICK_CHECKPOINT_RUN_S = 40, 20
CHECKPOINT_EVERY_S, CHECKPOINT_MIB = 10, 100
SYNC_S = 10
REQUIREMENT = "six==1.16.0"
REOPEN_S = 0.05  # how soon an early-ended log stream is opened again (the SDK waits 0.5 s)
POLL_S = 0.1
TARGET_P50_S = 1.0
MIB = 1024 * 1024

# The first statement prints; the rest only shows which environment the job ran in.
HELLO = """\
print("hello", __import__("time").time(), flush=True)
try:
    import six

    print("six", six.__version__, flush=True)
except ImportError:
    print("six missing", flush=True)
"""

# Fixed CPU work in a loop; every EVERY_S a fresh checkpoint of MIB MiB (+ k bytes, so each
# stored version names its write), written to a temp name and renamed; one more at the end.
CHECKPOINTER = """\
import json, os, pathlib, time

start_wall = time.time()
run_s, every_s = float(os.environ["SM_HP_RUN_S"]), float(os.environ["SM_HP_EVERY_S"])
size = int(os.environ["SM_HP_MIB"]) * 1024 * 1024
where = pathlib.Path(os.environ["SM_CHECKPOINT_DIR"])
cpus = sorted(os.sched_getaffinity(0))


def core_busy():
    # busy seconds of this job's one core, everyone's, from /proc/stat
    for line in open("/proc/stat"):
        name, *ticks = line.split()
        if name == f"cpu{cpus[0]}":
            t = [int(x) for x in ticks]
            return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


print("ckpt-start", json.dumps({"dir": str(where), "cpus": cpus, "t": start_wall}), flush=True)


def work():
    x = 0
    for i in range(20_000):
        x += i * i
    return x


def checkpoint(k):
    began = time.perf_counter()
    data = os.urandom(size + k)
    tmp = where / ".checkpoint.bin.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, where / "checkpoint.bin")
    done = time.time()
    took = time.perf_counter() - began
    print("ckpt-write", json.dumps({"k": k, "size": size + k, "t": done, "s": took}), flush=True)
    return took


began = time.monotonic()
cpu0, busy0 = time.process_time(), core_busy()
next_at, k, iters, work_s, write_s = began + every_s, 0, 0, 0.0, 0.0
per_second = [0] * (int(run_s) + 2)
while True:
    now = time.monotonic()
    if now - began >= run_s:
        break
    if now >= next_at:
        k += 1
        write_s += checkpoint(k)
        next_at += every_s
        continue
    t = time.perf_counter()
    work()
    work_s += time.perf_counter() - t
    iters += 1
    per_second[min(int(now - began), len(per_second) - 1)] += 1
k += 1
write_s += checkpoint(k)
summary = {
    "iters": iters,
    "work_s": work_s,
    "write_s": write_s,
    "wall_s": time.monotonic() - began,
    "cpu_s": time.process_time() - cpu0,
    "core_busy_s": core_busy() - busy0,
    "per_second": per_second[: int(run_s)],
    "exit": time.time(),
}
print("ckpt-done", json.dumps(summary), flush=True)
"""


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = statistics.quantiles(ordered, n=10, method="inclusive")[8] if len(ordered) > 1 else 0
    return {"p50": statistics.median(ordered), "p90": p90 or ordered[-1], "max": ordered[-1]}


def pack(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- Shipyard --------------------------------------------------------------------------------


@contextlib.contextmanager
def shipyard_up(workdir: Path, env: dict[str, str]) -> Iterator[ShipyardServer]:
    """`shipyard up` as the harness starts it, with extra environment (the sync period)."""
    home, port = workdir / "shipyard-home", free_port()
    cmd = [sys.executable, "-m", "shipyard.cli.main", "up", "--home", str(home)]
    cmd += ["--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    env = {"SHIPYARD_LOG_LEVEL": "warning", **env}
    with running(cmd, f"{url}/readyz", workdir / "shipyard.log", env):
        creds = json.loads((home / "admin-credentials.json").read_text())
        yield ShipyardServer(url, creds["api_key"], home)


def project_client(server: ShipyardServer) -> tuple[httpx.Client, str]:
    """A client with a key scoped to a fresh bench project, and the project's jobs base."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers) as admin:
        admin.post("/api/v1/teams", json={"name": "bench"}).raise_for_status()
        admin.post("/api/v1/teams/bench/projects", json={"name": "jobs"}).raise_for_status()
        created = admin.post("/api/v1/keys", json={"project": "bench/jobs", "role": "engineer"})
        created.raise_for_status()
        key = created.json()["api_key"]
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    return client, "/api/v1/projects/bench/jobs"


@dataclass
class Sample:
    """One job: seconds to its first line, and the wall-clock moments in between."""

    total_s: float
    started: float
    posted: float
    printed: float
    arrived: float
    reopens: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    log: str = ""


def wait_shipyard(http: httpx.Client, base: str, name: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"{base}/jobs/{name}").json()
        if job["status"] in ("Completed", "Failed", "Stopped"):
            return dict(job)
        time.sleep(POLL_S)
    raise RuntimeError(f"job {name} did not end in {timeout}s")


def shipyard_first_line(http: httpx.Client, base: str, spec: dict[str, Any]) -> Sample:
    name = spec["name"]
    started = time.time()
    http.post(f"{base}/jobs", json=spec).raise_for_status()
    posted = time.time()
    reopens = 0
    while True:
        with http.stream(
            "GET", f"{base}/jobs/{name}/logs", params={"follow": "true"}, timeout=900
        ) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith("hello "):
                    arrived = time.time()
                    printed = float(line.split()[1])
                    sample = Sample(arrived - started, started, posted, printed, arrived, reopens)
                    break
            else:
                sample = None
        if sample is not None:
            break
        if http.get(f"{base}/jobs/{name}").json()["status"] in ("Completed", "Failed", "Stopped"):
            raise RuntimeError(f"job {name} ended without its first line")
        reopens += 1
        time.sleep(REOPEN_S)
    done = wait_shipyard(http, base, name)
    if done["status"] != "Completed":
        raise RuntimeError(f"job {name} {done['status']}: {done['reason'][-2000:]}")
    sample.phases = {phase: stamp(at) for phase, at in done["phase_times"].items()}
    sample.log = http.get(f"{base}/jobs/{name}/logs").text
    return sample


def shipyard_latency(
    http: httpx.Client, base: str, count: int, requirements: bool
) -> tuple[Sample, list[Sample]]:
    """One untimed warm-up job (it builds the environment when there is one), then ``count``."""
    kind = "req" if requirements else "inherit"
    spec: dict[str, Any] = {
        "entry_point": "hello.py",
        "source": "src/hello.tar.gz",
        "instance_type": "cpu.small",
    }
    if requirements:
        spec["requirements"] = "requirements.txt"
    warm = shipyard_first_line(http, base, {**spec, "name": f"{kind}-warm"})
    expected = "six 1.16.0" if requirements else ""
    if expected and expected not in warm.log:
        raise RuntimeError(f"the warm-up job did not run in its environment:\n{warm.log}")
    samples = []
    for i in range(count):
        samples.append(shipyard_first_line(http, base, {**spec, "name": f"{kind}-{i}"}))
        console.print(f"  shipyard {kind} {i + 1}/{count}: {samples[-1].total_s:.3f} s")
    return warm, samples


def sdk_latency(server: ShipyardServer, http: httpx.Client, base: str, count: int) -> Any:
    """The same inherit jobs through the SDK: ``jobs.submit(...)``, then the first line of
    ``job.logs(follow=True)`` (which re-opens an early-ended stream after its own pause)."""
    try:
        import shipyard

        session = shipyard.Session(server.url, http.headers["Authorization"].split()[1])
        jobs = session.jobs("bench/jobs")
    except Exception as exc:  # the SDK is optional here
        return f"unavailable: {exc}"
    spec = {"entry_point": "hello.py", "source": "src/hello.tar.gz", "instance_type": "cpu.small"}
    samples = []
    with session:
        for i in range(count + 1):  # the first is an untimed warm-up
            name = f"sdk-{i}"
            started = time.time()
            job = jobs.submit(name=name, **spec)
            posted = time.time()
            for line in job.logs(follow=True):
                if line.startswith("hello "):
                    arrived = time.time()
                    printed = float(line.split()[1])
                    break
            done = wait_shipyard(http, base, name)
            if done["status"] != "Completed":
                raise RuntimeError(f"job {name} {done['status']}: {done['reason'][-2000:]}")
            sample = Sample(arrived - started, started, posted, printed, arrived)
            sample.phases = {phase: stamp(at) for phase, at in done["phase_times"].items()}
            if i:
                samples.append(sample)
                console.print(f"  shipyard SDK {i}/{count}: {sample.total_s:.3f} s")
    return samples


SEGMENTS = (
    ("submit → Pending (POST, job row committed)", "started", "Pending"),
    ("Pending → Starting (controller claims it)", "Pending", "Starting"),
    ("Starting → Downloading (run, job key)", "Starting", "Downloading"),
    ("Downloading → Running (source, env, spawn)", "Downloading", "Running"),
    ("Running → script's print (interpreter start)", "Running", "printed"),
    ("print → line on the client (log stream)", "printed", "arrived"),
)


def moments(sample: Sample) -> dict[str, float]:
    return {
        "started": sample.started,
        "posted": sample.posted,
        "printed": sample.printed,
        "arrived": sample.arrived,
        **sample.phases,
    }


def breakdown(samples: list[Sample]) -> list[tuple[str, float]]:
    rows = []
    for label, a, b in SEGMENTS:
        rows.append((label, statistics.median(moments(s)[b] - moments(s)[a] for s in samples)))
    return rows


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_job(
    http: httpx.Client, base: str, name: str, checkpointing: bool, run_s: int
) -> dict[str, Any]:
    """Run one checkpointing job; watch the store and the file's atime while it runs."""
    spec = {
        "name": name,
        "entry_point": "ckpt.py",
        "source": "src/ckpt.tar.gz",
        "instance_type": "cpu.small",
        "checkpointing": checkpointing,
        "hyperparameters": {"run_s": run_s, "every_s": CHECKPOINT_EVERY_S, "mib": CHECKPOINT_MIB},
    }
    http.post(f"{base}/jobs", json=spec).raise_for_status()
    versions_url = f"{base}/artifact-versions/jobs/{name}/checkpoints/checkpoint.bin"
    checkpoint_file: Path | None = None
    atimes: dict[int, int] = {}  # write k -> the file's atime (ns) once the sync read it
    seen: dict[int, float] = {}  # write k -> when this client first saw its version
    status = ""
    while status not in ("Completed", "Failed", "Stopped"):
        time.sleep(POLL_S)
        status = http.get(f"{base}/jobs/{name}").json()["status"]
        if checkpoint_file is None:
            for line in http.get(f"{base}/jobs/{name}/logs").text.splitlines():
                if line.startswith("ckpt-start "):
                    where = json.loads(line.split(" ", 1)[1])["dir"]
                    checkpoint_file = Path(where) / "checkpoint.bin"
        else:
            with contextlib.suppress(FileNotFoundError):
                st = checkpoint_file.stat()
                k = st.st_size - CHECKPOINT_MIB * MIB
                if st.st_atime_ns > st.st_mtime_ns:  # read since written: the sync took it
                    atimes[k] = st.st_atime_ns
        r = http.get(versions_url)
        if r.status_code == 200:
            for v in r.json():
                seen.setdefault(v["size"] - CHECKPOINT_MIB * MIB, time.time())
    done = http.get(f"{base}/jobs/{name}").json()
    if done["status"] != "Completed":
        raise RuntimeError(f"job {name} {done['status']}: {done['reason'][-2000:]}")
    lines = http.get(f"{base}/jobs/{name}/logs").text.splitlines()
    start = next(json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("ckpt-start "))
    writes = {
        w["k"]: w
        for w in (json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("ckpt-write "))
    }
    summary = next(json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("ckpt-done "))
    r = http.get(versions_url)
    versions = r.json() if r.status_code == 200 else []
    r = http.get(f"{base}/artifact-versions/jobs/{name}/checkpoints/.checkpoint.bin.tmp")
    tmp_versions = r.json() if r.status_code == 200 else []
    stored: dict[int, dict[str, Any]] = {}
    for v in versions:  # oldest first: each write's first version is when it landed
        k = v["size"] - CHECKPOINT_MIB * MIB
        at = stamp(v["created_at"])
        sync_s = at - atimes[k] / 1e9 if k in atimes else None
        if k not in stored:
            stored[k] = {"latency_s": at - writes[k]["t"], "sync_s": sync_s, "seen": seen.get(k)}
    phases = {p: stamp(t) for p, t in done["phase_times"].items()}
    return {
        "checkpointing": checkpointing,
        "cpus": start["cpus"],
        "rate": summary["iters"] / summary["work_s"],
        "cpu_share": (summary["cpu_s"] - summary["write_s"]) / summary["work_s"],
        "others_on_core": (summary["core_busy_s"] - summary["cpu_s"]) / summary["wall_s"],
        "summary": summary,
        "writes": writes,
        "stored": stored,
        "tmp_versions": [(v["size"], v["deleted"]) for v in tmp_versions],
        "uploaded_mib": sum(v["size"] for v in [*versions, *tmp_versions] if not v["deleted"])
        / MIB,
        "never_stored": sorted(set(writes) - set(stored)),
        "versions": [  # every version of both names: name, write k, deleted, when
            {
                "name": v["path"].rsplit("/", 1)[1],
                "k": v["size"] - CHECKPOINT_MIB * MIB,
                "deleted": v["deleted"],
                "at_s": round(stamp(v["created_at"]) - start["t"], 2),
            }
            for v in [*versions, *tmp_versions]
        ],
        "final_sync_s": phases["Uploading"] - summary["exit"],
    }


def checkpoint_runs(http: httpx.Client, base: str, pid: int, quick: bool) -> list[dict[str, Any]]:
    run_s = QUICK_CHECKPOINT_RUN_S if quick else CHECKPOINT_RUN_S
    order = [False, True] if quick else [False, True, True, False]
    results = []
    for i, on in enumerate(order):
        console.print(f"  checkpoint job {i + 1}/{len(order)}: checkpointing={on}, {run_s} s")
        cpu0 = cpu_seconds(pid)
        results.append(checkpoint_job(http, base, f"ckpt-{i}", on, run_s))
        r = results[-1]
        r["server_cpu_s"] = cpu_seconds(pid) - cpu0
        console.print(f"    cpu {r['cpus']}: {r['rate']:.1f} it/s, stored {sorted(r['stored'])}")
    return results


def server_pid(home: Path) -> int:
    """The `shipyard up` process serving ``home`` (its command line names the home)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if b"shipyard.cli.main" in args and str(home).encode() in args:
                    return int(entry.name)
    raise RuntimeError(f"no shipyard server process for {home}")


def cpu_seconds(pid: int) -> float:
    """User + system seconds of one process (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shipyard_side(workdir: Path, quick: bool) -> dict[str, Any]:
    count = QUICK_JOBS if quick else JOBS
    out: dict[str, Any] = {}
    with shipyard_up(workdir, {"SHIPYARD_CHECKPOINT_SYNC_S": str(SYNC_S)}) as server:
        http, base = project_client(server)
        with http:
            source = pack({"hello.py": HELLO, "requirements.txt": REQUIREMENT + "\n"})
            http.put(f"{base}/artifacts/src/hello.tar.gz", content=source).raise_for_status()
            ckpt = pack({"ckpt.py": CHECKPOINTER})
            http.put(f"{base}/artifacts/src/ckpt.tar.gz", content=ckpt).raise_for_status()
            console.print("Shipyard: inherit…")
            out["inherit_warm"], out["inherit"] = shipyard_latency(http, base, count, False)
            console.print("Shipyard: requirements.txt (the warm-up job builds the env)…")
            out["req_warm"], out["req"] = shipyard_latency(http, base, count, True)
            console.print("Shipyard: inherit through the SDK…")
            out["sdk"] = sdk_latency(server, http, base, count)
            console.print("Shipyard: checkpoint sync…")
            out["checkpoints"] = checkpoint_runs(http, base, server_pid(server.home), quick)
    return out


# --- Ray Jobs --------------------------------------------------------------------------------


@contextlib.contextmanager
def ray_head(workdir: Path) -> Iterator[str]:
    """`ray start --head --block` in a session of its own, ended through that session (never
    `ray stop`, which ends every Ray on the machine); yields the dashboard's URL."""
    temp_dir = Path(tempfile.mkdtemp(prefix="sy-bray-", dir="/tmp"))  # short: Unix sockets
    dashboard = free_port()
    own_ports = [
        f"--{option}={free_port()}"
        for option in (
            "port",
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python`
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--object-store-memory=200000000",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *own_ports,
    ]
    url = f"http://127.0.0.1:{dashboard}"
    with (workdir / "ray.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(f"{url}/api/version", proc, timeout=120)
        yield url
    finally:
        end_session(proc, grace_s=20)
        shutil.rmtree(temp_dir, ignore_errors=True)


async def _ray_first_line(client: Any, runtime_env: dict[str, Any]) -> Sample:
    started = time.time()
    job_id = client.submit_job(entrypoint="python hello.py", runtime_env=runtime_env)
    posted = time.time()
    sample = None
    async for chunk in client.tail_job_logs(job_id):
        for line in chunk.splitlines():
            if line.startswith("hello "):
                arrived = time.time()
                printed = float(line.split()[1])
                sample = Sample(arrived - started, started, posted, printed, arrived)
                break
        if sample is not None:
            break
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + 900
    while (status := client.get_job_status(job_id)) not in (
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray job {job_id} still {status}")
        await asyncio.sleep(POLL_S)
    if status != JobStatus.SUCCEEDED or sample is None:
        info = client.get_job_info(job_id)
        raise RuntimeError(f"Ray job {job_id} {status}: {info.message}")
    sample.log = client.get_job_logs(job_id)
    return sample


def ray_latency(
    client: Any, workdir: Path, count: int, extra: dict[str, Any], label: str
) -> tuple[Sample, list[Sample]]:
    runtime_env = {"working_dir": str(workdir), **extra}
    warm = asyncio.run(_ray_first_line(client, runtime_env))
    if extra and "six 1.16.0" not in warm.log:
        raise RuntimeError(f"the Ray warm-up job did not run in its environment:\n{warm.log}")
    samples = []
    for i in range(count):
        samples.append(asyncio.run(_ray_first_line(client, runtime_env)))
        console.print(f"  ray {label} {i + 1}/{count}: {samples[-1].total_s:.3f} s")
    return warm, samples


def ray_side(workdir: Path, quick: bool) -> dict[str, Any]:
    from ray.job_submission import JobSubmissionClient

    count = QUICK_JOBS if quick else JOBS
    code = workdir / "ray-hello"
    code.mkdir()
    (code / "hello.py").write_text(HELLO)
    out: dict[str, Any] = {}
    with ray_head(workdir) as url:
        client = JobSubmissionClient(url)
        console.print("Ray: working_dir…")
        out["inherit_warm"], out["inherit"] = ray_latency(client, code, count, {}, "working_dir")
        for kind in ("pip", "uv"):
            console.print(f"Ray: {kind} runtime_env (the warm-up job builds it)…")
            try:
                warm, samples = ray_latency(client, code, count, {kind: [REQUIREMENT]}, kind)
            except Exception as exc:  # reported, not fatal: the anchor may lack a plugin
                out[kind] = f"unavailable: {str(exc)[-300:]}"
                continue
            out[f"{kind}_warm"], out[kind] = warm, samples
    return out


# --- report ----------------------------------------------------------------------------------


def fmt(stats: dict[str, float]) -> str:
    return f"p50 {stats['p50']:.3f} · p90 {stats['p90']:.3f} · max {stats['max']:.3f} s"


CASES = (
    ("Shipyard inherit", "ours", "inherit"),
    ("Shipyard requirements.txt, cached", "ours", "req"),
    ("Shipyard inherit, through the SDK", "ours", "sdk"),
    ("Ray working_dir", "theirs", "inherit"),
    ("Ray pip, cached", "theirs", "pip"),
    ("Ray uv, cached", "theirs", "uv"),
)
PAIRS = (
    ("Shipyard inherit", "Ray working_dir"),
    ("Shipyard requirements.txt, cached", "Ray pip, cached"),
    ("Shipyard requirements.txt, cached", "Ray uv, cached"),
)


def report_latency(ours: dict[str, Any], theirs: dict[str, Any], count: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rows = []
    for label, which, key in CASES:
        side = ours if which == "ours" else theirs
        if isinstance(side.get(key), str):
            rows.append((label, "—", side[key]))
            continue
        samples, warm = side[key], side.get(f"{key}_warm")
        stats = pct([s.total_s for s in samples])
        startup = pct([s.printed - s.started for s in samples])
        figures[label] = {**stats, "startup": startup}
        notes = [f"submit → script's print p50 {startup['p50']:.3f} s"]
        if warm is not None:
            figures[label]["warmup_s"] = warm.total_s
            notes.append(f"warm-up job {warm.total_s:.2f} s")
            if warm.phases:
                build = warm.phases["Running"] - warm.phases["Downloading"]
                figures[label]["warmup_downloading_s"] = build
                notes.append(f"(Downloading {build:.2f} s)")
        if which == "ours":
            if key != "sdk":
                reopens = statistics.median(s.reopens for s in samples)
                notes.append(f"stream opened {1 + reopens:g}x (median)")
            notes.append(f"p50 < 1 s: {'met' if stats['p50'] < TARGET_P50_S else 'NOT met'}")
        rows.append((label, fmt(stats), " · ".join(notes)))
    ratio_table(f"Submit → first user line on the log stream, {count} jobs one at a time", rows)

    rows = []
    for ours_label, ray_label in PAIRS:
        if ray_label not in figures:
            continue
        a, b = figures[ours_label], figures[ray_label]
        rows.append(
            (
                f"{ours_label} vs {ray_label}",
                f"first line: p50 {b['p50'] / a['p50']:.0f}x · p90 {b['p90'] / a['p90']:.0f}x "
                f"faster",
                f"script started: p50 {b['startup']['p50'] / a['startup']['p50']:.0f}x faster"
                f" · cold env: Shipyard {a['warmup_s']:.2f} s, Ray {b['warmup_s']:.1f} s",
            )
        )
    rows.append(
        (
            "SageMaker (documented, not run)",
            "minutes from CreateTrainingJob to the script (instance + image)",
            "warm pools: reusing a kept instance aims at < 20 s",
        )
    )
    ratio_table("Shipyard vs Ray Jobs (same machine, same run)", rows)

    for key, name in (("inherit", "Shipyard inherit"), ("req", CASES[1][0])):
        rows = [(part, f"{1000 * s:.0f} ms", "median") for part, s in breakdown(ours[key])]
        ratio_table(f"Where the time goes: {name} (phase_times)", rows)
    rows = []
    for key, label in (("inherit", "working_dir"), ("pip", "pip"), ("uv", "uv")):
        if isinstance(theirs.get(key), list):
            samples = theirs[key]
            for part, a, b in (
                ("submit_job call", "started", "posted"),
                ("submit returned → script's print", "posted", "printed"),
                ("print → line on the client", "printed", "arrived"),
            ):
                ms = 1000 * statistics.median(moments(s)[b] - moments(s)[a] for s in samples)
                rows.append((f"Ray {label}: {part}", f"{ms:.0f} ms", "median"))
    ratio_table("Where the time goes: Ray Jobs", rows)
    return figures


def report_checkpoints(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for r in runs:
        lat = [s["latency_s"] for s in r["stored"].values()]
        syncs = [s["sync_s"] for s in r["stored"].values() if s["sync_s"] is not None]
        notes = [
            f"work got {100 * r['cpu_share']:.0f}% of its core",
            f"others busy on it {100 * r['others_on_core']:.0f}%",
            f"server CPU {r['server_cpu_s']:.1f} s",
            f"{len(r['writes'])} writes, {len(r['stored'])} stored",
        ]
        if lat:
            notes.append(f"write→store {min(lat):.1f} to {max(lat):.1f} s")
        if syncs:
            notes.append(f"sync {min(syncs):.2f} to {max(syncs):.2f} s")
        if r["checkpointing"]:
            notes.append(f"never stored: {r['never_stored'] or 'none'}")
            notes.append(f"{r['uploaded_mib']:.0f} MiB uploaded")
        if r["tmp_versions"]:
            notes.append(f"temp-file versions {len(r['tmp_versions'])} (incl. delete markers)")
        on = str(r["checkpointing"]).lower()
        rows.append(
            (f"checkpointing={on} (cpu {r['cpus']})", f"{r['rate']:.1f} it/s", " · ".join(notes))
        )
    on = [r for r in runs if r["checkpointing"]]
    off = [r for r in runs if not r["checkpointing"]]
    rate_on = statistics.mean(r["rate"] for r in on)
    rate_off = statistics.mean(r["rate"] for r in off)
    latencies = [s["latency_s"] for r in on for s in r["stored"].values()]
    syncs = [s["sync_s"] for r in on for s in r["stored"].values() if s["sync_s"] is not None]
    final = [r["final_sync_s"] for r in on]
    overhead = 100 * (rate_off - rate_on) / rate_off
    server_on = statistics.mean(r["server_cpu_s"] for r in on)
    server_off = statistics.mean(r["server_cpu_s"] for r in off)
    # MiB each job uploaded: every stored version of either name (delete markers carry none)
    synced = statistics.mean(r["uploaded_mib"] for r in on)
    figures = {
        "rate_on": rate_on,
        "rate_off": rate_off,
        "overhead_pct": overhead,
        "write_to_store_s": pct(latencies) if latencies else None,
        "sync_s": pct(syncs) if syncs else None,
        "sync_mib_s": CHECKPOINT_MIB / statistics.median(syncs) if syncs else None,
        "final_sync_s": final,
        "server_cpu_s_on": server_on,
        "server_cpu_s_off": server_off,
        "uploaded_mib_per_job": [round(r["uploaded_mib"], 1) for r in on],
        "server_cpu_s_per_100_mib": 100 * (server_on - server_off) / synced if synced else None,
        "stored_per_job": [len(r["stored"]) for r in on],
        "writes_per_job": [len(r["writes"]) for r in on],
        "tmp_versions": [len(r["tmp_versions"]) for r in on],
        "runs": [
            {k: r[k] for k in ("checkpointing", "cpus", "rate", "cpu_share", "others_on_core")}
            | {"server_cpu_s": r["server_cpu_s"], "stored": r["stored"], "writes": r["writes"]}
            | {"versions": r["versions"], "never_stored": r["never_stored"]}
            for r in runs
        ],
    }
    rows.append(
        (
            "overhead of checkpointing=true",
            f"{overhead:+.1f}% ({rate_on:.1f} vs {rate_off:.1f} it/s)",
            "positive: slower with sync on; means of the runs each way",
        )
    )
    if latencies:
        rows.append(("checkpoint write → version in store", fmt(pct(latencies)), ""))
    if syncs:
        rows.append(
            (
                f"one sync of {CHECKPOINT_MIB} MiB (file read starts → created_at)",
                fmt(pct(syncs)),
                f"{figures['sync_mib_s']:.0f} MiB/s (median)",
            )
        )
    rows.append(
        (
            "final sync after the script exits",
            " · ".join(f"{s:.2f} s" for s in final),
            "exit → Uploading",
        )
    )
    if figures["server_cpu_s_per_100_mib"] is not None:
        rows.append(
            (
                f"server CPU per {CHECKPOINT_MIB} MiB synced",
                f"{figures['server_cpu_s_per_100_mib']:.2f} s",
                f"server CPU per job: {server_on:.1f} s on, {server_off:.1f} s off",
            )
        )
    ratio_table(
        f"Checkpoint sync: {CHECKPOINT_MIB} MiB every {CHECKPOINT_EVERY_S} s, sync every "
        f"{SYNC_S} s, cpu.small (1 pinned CPU of 2)",
        rows,
    )
    return figures


def dump(sample: Sample) -> dict[str, Any]:
    return {k: round(v, 4) for k, v in moments(sample).items()} | {"reopens": sample.reopens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 jobs and a 20 s checkpoint job")
    args = parser.parse_args()
    count = QUICK_JOBS if args.quick else JOBS
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/tmp")) as tmp:
        workdir = Path(tmp)
        ours = shipyard_side(workdir, args.quick)
        theirs = ray_side(workdir, args.quick)
    latency = report_latency(ours, theirs, count)
    checkpoints = report_checkpoints(ours["checkpoints"])
    raw = {
        key: [dump(s) for s in value]
        for side, prefix in ((ours, "shipyard"), (theirs, "ray"))
        for key0, value in side.items()
        if isinstance(value, list) and value and isinstance(value[0], Sample)
        for key in [f"{prefix}_{key0}"]
    }
    print(json.dumps({"latency": latency, "checkpoints": checkpoints, "samples": raw}))


if __name__ == "__main__":
    main()
