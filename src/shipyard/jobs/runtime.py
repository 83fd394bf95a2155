"""The job runtime contract: the directories, files and environment a training script sees.

A script written for SageMaker runs here unmodified, so everything mirrors what the
sagemaker-training-toolkit produces inside a SageMaker container: the ``/opt/ml``-style tree,
the three JSON files under ``input/config`` and the ``SM_*`` variables (same names, same JSON
encodings). Shipyard adds ``SM_CHECKPOINT_DIR`` (synced to the store, so an interrupted job
resumes) and the ``torch.distributed`` rendezvous variables, so multi-host scripts need no
launcher of their own.

Everything here is pure: the backend (local processes, Ray) decides where the tree lives and
how the process starts; this module only says what the tree and the environment contain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.kit.files import write_private

_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

#: Only file mode exists here: channels are plain directories, never named pipes.
_INPUT_MODE = "File"
#: Processes of one job talk over loopback locally; the Ray backend overrides nothing else.
_NETWORK_INTERFACE = "lo"
#: The toolkit keeps ``sagemaker_*`` hyperparameters for itself; users never see them.
_RESERVED_HP_PREFIX = "sagemaker_"

_RESERVED_ENV_NAMES = frozenset(
    {
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "PYTHONUNBUFFERED",
        "TRAINING_JOB_NAME",
    }
)
#: Whole families of names the runtime owns, now or later.
RESERVED_ENV_PREFIXES: tuple[str, ...] = ("SM_", "SHIPYARD_")


@dataclass(frozen=True)
class JobLayout:
    """The per-job directory tree, laid out like ``/opt/ml`` in a SageMaker container.

    ``root`` must be absolute: the script's working directory is its code directory, so a
    relative path in ``SM_MODEL_DIR`` would point somewhere else entirely.
    """

    root: Path

    def __post_init__(self) -> None:
        root = Path(self.root)
        if not root.is_absolute():
            raise ValueError(f"job root must be an absolute path, got {str(root)!r}")
        object.__setattr__(self, "root", root)

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def data_dir(self) -> Path:
        return self.input_dir / "data"

    def channel_dir(self, name: str) -> Path:
        """Where channel ``name`` is materialised; the name is checked so it stays a child."""
        return self.data_dir / check_channel_name(name)

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        """The toolkit's ``SM_OUTPUT_INTERMEDIATE_DIR``: files uploaded while training runs."""
        return self.output_dir / "intermediate"

    @property
    def failure_file(self) -> Path:
        """SageMaker's convention: a script writes its failure reason here before exiting."""
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    def directories(self, channels: Sequence[str] = ()) -> list[Path]:
        """Every directory of the tree, parents before children."""
        fixed = [
            self.root,
            self.input_dir,
            self.config_dir,
            self.data_dir,
            self.model_dir,
            self.output_dir,
            self.output_data_dir,
            self.output_intermediate_dir,
            self.checkpoint_dir,
            self.code_dir,
        ]
        return fixed + [self.channel_dir(name) for name in _unique_channels(channels)]

    def create(self, channels: Sequence[str]) -> None:
        """Make the tree, each directory 0700: training data and models are the job's alone.

        Modes are set explicitly because ``mkdir(mode=...)`` is filtered by the umask and
        leaves directories that already exist untouched.
        """
        for directory in self.directories(channels):
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)


@dataclass(frozen=True)
class Placement:
    """Where one process of a job runs, and how it finds its peers.

    ``hosts`` are the SageMaker-style names (``algo-1``, ``algo-2``…) in order; ``rank`` and
    ``local_rank`` are this process's ``torch.distributed`` ranks. ``procs_per_host`` is the
    number of processes on each host (one per GPU, typically), so the world spans
    ``len(hosts) * procs_per_host`` processes.
    """

    hosts: tuple[str, ...]
    current_host: str
    rank: int
    local_rank: int
    master_addr: str
    master_port: int
    num_cpus: int
    num_gpus: int = 0
    procs_per_host: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", tuple(self.hosts))
        for problem in self._problems():
            raise ValueError(f"placement: {problem}")

    def _problems(self) -> Iterable[str]:
        if not self.hosts:
            yield "hosts must not be empty"
        if len(set(self.hosts)) != len(self.hosts):
            yield f"hosts must be unique, got {list(self.hosts)}"
        if self.current_host not in self.hosts:
            yield f"current_host {self.current_host!r} is not one of the hosts"
        if self.procs_per_host < 1:
            yield "procs_per_host must be at least 1"
        if not 0 <= self.rank < self.world_size:
            yield f"rank {self.rank} is outside [0, {self.world_size})"
        if not 0 <= self.local_rank < max(self.procs_per_host, 1):
            yield f"local_rank {self.local_rank} is outside [0, {self.procs_per_host})"
        if not self.master_addr:
            yield "master_addr must not be empty"
        if not 1 <= self.master_port <= 65535:
            yield f"master_port {self.master_port} is not a TCP port"
        if self.num_cpus < 1 or self.num_gpus < 0:
            yield "num_cpus must be at least 1 and num_gpus at least 0"

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.procs_per_host

    @property
    def master_host(self) -> str:
        """The toolkit's ``master_hostname``: the first host leads."""
        return self.hosts[0]


def check_channel_name(name: str) -> str:
    """Return ``name`` if it is a safe channel name (never ``..``, ``/`` or empty)."""
    if not isinstance(name, str) or not _CHANNEL_NAME.fullmatch(name):
        raise ValueError(
            f"channel name {name!r} must be 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _unique_channels(channels: Iterable[str]) -> list[str]:
    """Validated, sorted channel names; refuses names that would share an env variable."""
    names = sorted(check_channel_name(name) for name in channels)
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    seen: dict[str, str] = {}
    for name in names:
        for key in {_toolkit_key(name), _shell_key(name)}:
            if key in seen and seen[key] != name:
                raise ValueError(f"channel names {seen[key]!r} and {name!r} collide")
            seen[key] = name
    return names


def _toolkit_key(name: str) -> str:
    return name.upper()


def _shell_key(name: str) -> str:
    return name.upper().replace("-", "_")


def _check_hyperparameters(hps: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameter names the environment and the command line can both carry."""
    seen: dict[str, str] = {}
    for name in hps:
        if not isinstance(name, str) or not _HP_NAME.fullmatch(name):
            raise ValueError(
                f"hyperparameter name {name!r} must be 1-256 letters, digits, '_', '.' or '-'"
            )
        if name.startswith(_RESERVED_HP_PREFIX):
            raise ValueError(f"hyperparameter {name!r}: the 'sagemaker_' prefix is reserved")
        upper = name.upper()
        if upper in seen:
            raise ValueError(f"hyperparameters {seen[upper]!r} and {name!r} collide")
        seen[upper] = name
    return dict(hps)


def _json(value: Any) -> str:
    """The toolkit's encoding: compact, sorted keys, ASCII. NaN/inf are not JSON: refused."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-serialisable: {exc}") from exc


def _env_value(value: Any) -> str:
    """``mapping.to_env_vars``: strings as they are, ``None`` empty, anything else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _json(value)


def _check_entry_point(entry_point: str) -> str:
    """A path relative to the code directory that cannot climb out of it."""
    parts = PurePosixPath(entry_point).parts
    if not entry_point or "\x00" in entry_point or entry_point.startswith("/") or ".." in parts:
        raise ValueError(f"entry_point {entry_point!r} must be a relative path inside the code")
    return entry_point


def _input_data_config(
    channels: Sequence[str] | Mapping[str, Mapping[str, str]],
) -> dict[str, dict[str, str]]:
    """``inputdataconfig.json``: each channel in file mode, with whatever else was given."""
    given: Mapping[str, Mapping[str, str]] = (
        channels
        if isinstance(channels, Mapping)
        else {name: {} for name in _unique_channels(channels)}
    )
    config: dict[str, dict[str, str]] = {}
    for name in _unique_channels(given):
        extra = dict(given[name])
        mode = extra.pop("TrainingInputMode", _INPUT_MODE)
        if mode != _INPUT_MODE:
            raise ValueError(f"channel {name!r}: only TrainingInputMode 'File' is supported")
        config[name] = {"TrainingInputMode": _INPUT_MODE, **extra}
    return config


def _resource_config(placement: Placement) -> dict[str, Any]:
    return {
        "current_host": placement.current_host,
        "hosts": list(placement.hosts),
        "network_interface_name": _NETWORK_INTERFACE,
    }


def hyperparameter_args(hps: Mapping[str, Any]) -> list[str]:
    """The arguments the toolkit passes the script (``mapping.to_cmd_args``), so its argparse
    sees the same strings it would on SageMaker.

    Sorted by name; ``--name`` (a one-letter name gets ``-n``); a mapping becomes
    ``k=v,k=v`` sorted by key, ``None`` an empty string and anything else ``str(value)``
    (so ``True`` is ``"True"`` and ``[1, 2]`` is ``"[1, 2]"``, exactly as there).
    """
    args: list[str] = []
    for name in sorted(_check_hyperparameters(hps)):
        args.append(f"--{name}" if len(name) > 1 else f"-{name}")
        args.append(_arg_value(hps[name]))
    return args


def _arg_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if value is None:
        return ""
    return str(value)


def _hyperparameter_file_value(value: Any) -> str:
    """SageMaker stores every hyperparameter as a string; the toolkit ``json.loads`` each one
    back (falling back to the raw string), so non-strings are JSON-encoded to round-trip with
    their type. As on SageMaker, a string that looks like JSON (``"10"``) decodes as such.
    """
    return value if isinstance(value, str) else _json(value)


def write_config(
    layout: JobLayout,
    placement: Placement,
    *,
    hyperparameters: Mapping[str, Any],
    channels: Sequence[str] | Mapping[str, Mapping[str, str]],
) -> None:
    """Write ``input/config/{hyperparameters,resourceconfig,inputdataconfig}.json`` (0600),
    for scripts and libraries that read the files rather than the environment."""
    hps = _check_hyperparameters(hyperparameters)
    files: dict[str, Any] = {
        "hyperparameters.json": {k: _hyperparameter_file_value(v) for k, v in sorted(hps.items())},
        "resourceconfig.json": _resource_config(placement),
        "inputdataconfig.json": _input_data_config(channels),
    }
    for filename, content in files.items():
        write_private(layout.config_dir / filename, (_json(content) + "\n").encode())


def _training_env(
    layout: JobLayout,
    placement: Placement,
    *,
    entry_point: str,
    hps: Mapping[str, Any],
    input_data_config: Mapping[str, Mapping[str, str]],
    job_name: str,
    log_level: int,
) -> dict[str, Any]:
    """``SM_TRAINING_ENV``: the toolkit's ``Environment`` properties, key for key."""
    return {
        "additional_framework_parameters": {},
        "channel_input_dirs": {c: str(layout.channel_dir(c)) for c in input_data_config},
        "current_host": placement.current_host,
        "framework_module": None,
        "hosts": list(placement.hosts),
        "hyperparameters": dict(hps),
        "input_config_dir": str(layout.config_dir),
        "input_data_config": input_data_config,
        "input_dir": str(layout.input_dir),
        "is_master": placement.current_host == placement.master_host,
        "job_name": job_name,
        "log_level": log_level,
        "master_hostname": placement.master_host,
        "model_dir": str(layout.model_dir),
        "module_dir": str(layout.code_dir),
        "module_name": entry_point.removesuffix(".py"),
        "network_interface_name": _NETWORK_INTERFACE,
        "num_cpus": placement.num_cpus,
        "num_gpus": placement.num_gpus,
        "output_data_dir": str(layout.output_data_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.output_intermediate_dir),
        "resource_config": _resource_config(placement),
        "user_entry_point": entry_point,
    }


def runtime_env(
    layout: JobLayout,
    placement: Placement,
    *,
    entry_point: str,
    hyperparameters: Mapping[str, Any],
    channels: Sequence[str] | Mapping[str, Mapping[str, str]],
    job_name: str,
    user_args: Sequence[str] = (),
    log_level: int = 20,
) -> dict[str, str]:
    """The environment of one training process: the toolkit's ``to_env_vars`` plus
    ``SM_CHECKPOINT_DIR``, ``TRAINING_JOB_NAME`` (set by the SageMaker service), the
    ``torch.distributed`` rendezvous and ``PYTHONUNBUFFERED=1`` (logs, and the metrics parsed
    from them, arrive as they are printed).

    ``channels`` is a list of names or the same mapping given to :func:`write_config`.
    ``SM_USER_ARGS`` holds the hyperparameter arguments followed by ``user_args``. A channel
    with ``-`` in its name gets both the toolkit's ``SM_CHANNEL_TRAIN-SET`` and the
    shell-friendly ``SM_CHANNEL_TRAIN_SET``.
    """
    hps = _check_hyperparameters(hyperparameters)
    data_config = _input_data_config(channels)
    entry = _check_entry_point(entry_point)
    training_env = _training_env(
        layout,
        placement,
        entry_point=entry,
        hps=hps,
        input_data_config=data_config,
        job_name=job_name,
        log_level=log_level,
    )
    toolkit: dict[str, Any] = {
        "hosts": list(placement.hosts),
        "network_interface_name": _NETWORK_INTERFACE,
        "hps": hps,
        "user_entry_point": entry,
        "framework_params": {},
        "resource_config": training_env["resource_config"],
        "input_data_config": data_config,
        "output_data_dir": str(layout.output_data_dir),
        "channels": sorted(data_config),
        "current_host": placement.current_host,
        "module_name": training_env["module_name"],
        "log_level": log_level,
        "framework_module": None,
        "input_dir": str(layout.input_dir),
        "input_config_dir": str(layout.config_dir),
        "output_dir": str(layout.output_dir),
        "num_cpus": placement.num_cpus,
        "num_gpus": placement.num_gpus,
        "model_dir": str(layout.model_dir),
        "module_dir": str(layout.code_dir),
        "training_env": training_env,
        "user_args": hyperparameter_args(hps) + list(user_args),
        "output_intermediate_dir": str(layout.output_intermediate_dir),
        "checkpoint_dir": str(layout.checkpoint_dir),
    }
    env = {f"SM_{key.upper()}": _env_value(value) for key, value in toolkit.items()}
    for name in data_config:
        path = str(layout.channel_dir(name))
        env[f"SM_CHANNEL_{_toolkit_key(name)}"] = path
        env[f"SM_CHANNEL_{_shell_key(name)}"] = path
    for name, value in hps.items():
        env[f"SM_HP_{name.upper()}"] = _env_value(value)
    env.update(_distributed_env(placement, job_name))
    return env


def _distributed_env(placement: Placement, job_name: str) -> dict[str, str]:
    return {
        "RANK": str(placement.rank),
        "WORLD_SIZE": str(placement.world_size),
        "LOCAL_RANK": str(placement.local_rank),
        "MASTER_ADDR": placement.master_addr,
        "MASTER_PORT": str(placement.master_port),
        "TRAINING_JOB_NAME": job_name,
        "PYTHONUNBUFFERED": "1",
    }


def reserved_env_names() -> frozenset[str]:
    """Exact names the runtime sets and users may not; see also ``RESERVED_ENV_PREFIXES``."""
    return _RESERVED_ENV_NAMES


def _is_reserved(name: str) -> bool:
    """Compared case-insensitively: some platforms fold environment names to upper case."""
    upper = name.upper()
    return upper in _RESERVED_ENV_NAMES or upper.startswith(RESERVED_ENV_PREFIXES)


def check_user_env(env: Mapping[str, str]) -> None:
    """Refuse user variables that would break the contract or the process's environment.

    Raises ``ValueError`` naming the first offending variable, in the mapping's order.
    """
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"environment variable {name!r}: names are 1-128 letters, digits or '_', "
                "not starting with a digit"
            )
        if _is_reserved(name):
            raise ValueError(f"environment variable {name!r} is reserved by the job runtime")
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(
                f"environment variable {name!r}: the value must be a string without NUL"
            )
