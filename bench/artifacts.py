"""Artifact throughput: Shipyard's SDK vs MLflow's artifact proxy vs `cp` vs raw AES-GCM+SHA-256.

Usage: .venv/bin/python bench/artifacts.py [--size-mib 1024]

Everything runs on this machine in one run: the same file is uploaded and downloaded through
Shipyard (SDK → API → encrypted local store) and through `mlflow server --serve-artifacts`
(MlflowClient.log_artifact / download_artifacts), copied with `cp` and with `dd conv=fsync`
(a durable write, which every Shipyard upload is), and pushed through AES-256-GCM + SHA-256 in
one thread (the floor of what encryption at rest costs). `BENCH_TMP=/dev/shm` puts every
store on tmpfs, to measure the software without the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, mlflow_server, ratio_table, shipyard_server, timed

CHUNK = 4 * 1024 * 1024


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for _ in range(size // CHUNK):
            out.write(os.urandom(CHUNK))


def durable_write(src: Path, dest: Path) -> None:
    """What the store's disk gives a durable writer: dd with fsync, as every upload fsyncs."""
    subprocess.run(
        ["dd", f"if={src}", f"of={dest}", "bs=4M", "conv=fsync"], check=True, capture_output=True
    )


def raw_aes_sha(path: Path) -> None:
    aead, sha = AESGCM(AESGCM.generate_key(bit_length=256)), hashlib.sha256()
    nonce = os.urandom(12)
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            sha.update(chunk)
            aead.encrypt(nonce, chunk, None)


def shipyard_round_trip(workdir: Path, src: Path) -> tuple[float, float]:
    import shipyard

    with shipyard_server(workdir) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        httpx.post(f"{server.url}/api/v1/teams", json={"name": "bench"}, headers=headers)
        httpx.post(
            f"{server.url}/api/v1/teams/bench/projects", json={"name": "io"}, headers=headers
        )
        session = shipyard.Session(url=server.url, api_key=server.api_key)
        store = session.artifacts("bench/io")
        up = timed(store.put, "data/blob.bin", src)
        dest = workdir / "shipyard-download.bin"
        down = timed(lambda: store.get("data/blob.bin", dest=dest))
        assert dest.stat().st_size == src.stat().st_size
        dest.unlink()
    return up, down


def mlflow_round_trip(workdir: Path, src: Path) -> tuple[float, float]:
    from mlflow.tracking import MlflowClient

    with mlflow_server(workdir) as url:
        client = MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment("bench"))
        up = timed(client.log_artifact, run.info.run_id, str(src), "data")
        out = workdir / "mlflow-download"
        out.mkdir()
        down = timed(
            lambda: client.download_artifacts(run.info.run_id, f"data/{src.name}", str(out))
        )
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/tmp")) as tmp:
        workdir = Path(tmp)
        src = workdir / "blob.bin"
        console.print(f"making a {args.size_mib} MiB file of random bytes…")
        make_file(src, size)
        copy = workdir / "copy.bin"
        results = {
            "cp": timed(subprocess.run, ["cp", str(src), str(copy)]),
            "durable_write": timed(durable_write, src, copy),
            "aes_gcm_sha256": timed(raw_aes_sha, src),
        }
        copy.unlink()
        results["shipyard_up"], results["shipyard_down"] = shipyard_round_trip(workdir, src)
        if not args.skip_mlflow:
            results["mlflow_up"], results["mlflow_down"] = mlflow_round_trip(workdir, src)
    report(results, args.size_mib)


def report(seconds: dict[str, float], size_mib: int) -> None:
    rate = {name: size_mib / s for name, s in seconds.items()}
    rows = [(name, f"{r:,.0f} MiB/s", f"{seconds[name]:.2f} s") for name, r in rate.items()]
    for side in ("up", "down"):
        ours = rate[f"shipyard_{side}"]
        rows.append(
            (
                f"shipyard {side} / raw AES-GCM+SHA-256",
                f"{ours / rate['aes_gcm_sha256']:.2f}x",
                "target ≥ 0.5",
            )
        )
        rows.append((f"shipyard {side} / cp", f"{ours / rate['cp']:.2f}x", ""))
        rows.append(
            (
                f"shipyard {side} / durable write (dd fsync)",
                f"{ours / rate['durable_write']:.2f}x",
                "the disk's ceiling",
            )
        )
        if f"mlflow_{side}" in rate:
            rows.append(
                (
                    f"shipyard {side} / mlflow {side}",
                    f"{ours / rate[f'mlflow_{side}']:.2f}x",
                    "target ≥ 3",
                )
            )
    ratio_table(f"Artifact throughput, {size_mib} MiB, one run", rows)
    print(
        json.dumps({"size_mib": size_mib, "mib_per_s": {k: round(v, 1) for k, v in rate.items()}})
    )


if __name__ == "__main__":
    main()
