"""The replica's command line; each option may come from the environment, a flag wins.

=====================  ===========================  =========  ================================
flag                   environment                  default    meaning
=====================  ===========================  =========  ================================
--model-dir            SM_MODEL_DIR                 (needed)   the extracted model
--flavor               SHIPYARD_MODEL_FLAVOR        detected   sklearn|xgboost|pytorch|onnx|
                                                               custom
--port                 SAGEMAKER_BIND_TO_PORT       8080       0 picks a free port (see READY)
--host                 SHIPYARD_MODEL_HOST          127.0.0.1
--model-version        SHIPYARD_MODEL_VERSION       none       echoed as "model_version"
--max-body-bytes       SHIPYARD_MAX_BODY_BYTES      6291456    larger bodies get 413
--predict              SHIPYARD_PREDICT             predict    or proba (sklearn-API, ONNX)
--intra-op-threads     SHIPYARD_INTRA_OP_THREADS    1          xgboost/torch/ORT; 0: theirs
--inline-max-bytes     SHIPYARD_INLINE_MAX_BYTES    65536      larger bodies run in a thread
--batch-max            SHIPYARD_BATCH_MAX           0 (off)    rows per micro-batch
--batch-wait-ms        SHIPYARD_BATCH_WAIT_MS       0          wait for a batch to fill
--graceful-timeout     SHIPYARD_GRACEFUL_TIMEOUT    30         seconds to drain on SIGTERM
--keep-alive-timeout   SHIPYARD_KEEP_ALIVE_TIMEOUT  75         idle keep-alive connections
--log-level            SHIPYARD_LOG_LEVEL           warning
=====================  ===========================  =========  ================================

The keep-alive timeout is longer than any sensible client pool's idle expiry, so the gateway
closes an idle connection before the replica does and never sends on a closing socket.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.hosting.modelserver.flavors import FLAVORS


@dataclass(frozen=True, slots=True)
class ServerOptions:
    model_dir: Path
    flavor: str | None
    port: int
    host: str = "127.0.0.1"
    model_version: str | None = None
    max_body_bytes: int = 6 * 1024 * 1024
    predict: str = "predict"
    intra_op_threads: int = 1
    inline_max_bytes: int = 64 * 1024
    batch_max: int = 0
    batch_wait_ms: float = 0.0
    graceful_timeout: float = 30.0
    keep_alive_timeout: float = 75.0
    log_level: str = "warning"


# flag -> (environment variable, type, default)
_OPTIONS: dict[str, tuple[str, type, object]] = {
    "model-dir": ("SM_MODEL_DIR", Path, None),
    "flavor": ("SHIPYARD_MODEL_FLAVOR", str, None),
    "port": ("SAGEMAKER_BIND_TO_PORT", int, 8080),
    "host": ("SHIPYARD_MODEL_HOST", str, "127.0.0.1"),
    "model-version": ("SHIPYARD_MODEL_VERSION", str, None),
    "max-body-bytes": ("SHIPYARD_MAX_BODY_BYTES", int, 6 * 1024 * 1024),
    "predict": ("SHIPYARD_PREDICT", str, "predict"),
    "intra-op-threads": ("SHIPYARD_INTRA_OP_THREADS", int, 1),
    "inline-max-bytes": ("SHIPYARD_INLINE_MAX_BYTES", int, 64 * 1024),
    "batch-max": ("SHIPYARD_BATCH_MAX", int, 0),
    "batch-wait-ms": ("SHIPYARD_BATCH_WAIT_MS", float, 0.0),
    "graceful-timeout": ("SHIPYARD_GRACEFUL_TIMEOUT", float, 30.0),
    "keep-alive-timeout": ("SHIPYARD_KEEP_ALIVE_TIMEOUT", float, 75.0),
    "log-level": ("SHIPYARD_LOG_LEVEL", str, "warning"),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "flavor": FLAVORS,
    "predict": ("predict", "proba"),
    "log-level": ("critical", "error", "warning", "info", "debug"),
}


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ServerOptions:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.hosting.modelserver",
        description="Serve one model over HTTP (SageMaker's /ping and /invocations).",
    )
    for flag, (variable, kind, default) in _OPTIONS.items():
        parser.add_argument(
            f"--{flag}",
            type=kind,
            default=None,
            choices=_CHOICES.get(flag),
            help=f"(env {variable}; default {default})",
        )
    args = vars(parser.parse_args(argv))
    values: dict[str, object] = {}
    for flag, (variable, kind, default) in _OPTIONS.items():
        value = args[flag.replace("-", "_")]
        if value is None and env.get(variable):
            try:
                value = kind(env[variable])
            except ValueError:
                parser.error(f"{variable}={env[variable]!r} is not a valid {kind.__name__}")
            if flag in _CHOICES and value not in _CHOICES[flag]:
                parser.error(f"{variable}={value!r}: choose from {', '.join(_CHOICES[flag])}")
        values[flag.replace("-", "_")] = default if value is None else value
    if values["model_dir"] is None:
        parser.error("--model-dir (or SM_MODEL_DIR) is required")
    return ServerOptions(**values)  # type: ignore[arg-type]
