"""The job runtime contract: what an unmodified SageMaker training script finds around it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from shipyard.jobs.runtime import (
    JobLayout,
    Placement,
    check_user_env,
    hyperparameter_args,
    reserved_env_names,
    runtime_env,
    write_config,
)

ROOT = Path("/jobs/j-1")


def _placement(**overrides: object) -> Placement:
    fields: dict[str, object] = {
        "hosts": ("algo-1", "algo-2"),
        "current_host": "algo-2",
        "rank": 1,
        "local_rank": 0,
        "master_addr": "10.0.0.5",
        "master_port": 29500,
        "num_cpus": 4,
        "num_gpus": 0,
    }
    fields.update(overrides)
    return Placement(**fields)  # type: ignore[arg-type]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- layout -----------------------------------------------------------------------------------


def test_layout_paths_follow_opt_ml() -> None:
    layout = JobLayout(ROOT)
    assert layout.input_dir == ROOT / "input"
    assert layout.config_dir == ROOT / "input/config"
    assert layout.data_dir == ROOT / "input/data"
    assert layout.channel_dir("train") == ROOT / "input/data/train"
    assert layout.model_dir == ROOT / "model"
    assert layout.output_dir == ROOT / "output"
    assert layout.output_data_dir == ROOT / "output/data"
    assert layout.failure_file == ROOT / "output/failure"
    assert layout.checkpoint_dir == ROOT / "checkpoints"
    assert layout.code_dir == ROOT / "code"


def test_create_makes_every_directory_private(tmp_path: Path) -> None:
    layout = JobLayout(tmp_path / "job")
    layout.create(["train", "validation"])
    expected = [
        layout.root,
        layout.input_dir,
        layout.config_dir,
        layout.data_dir,
        layout.channel_dir("train"),
        layout.channel_dir("validation"),
        layout.model_dir,
        layout.output_dir,
        layout.output_data_dir,
        layout.checkpoint_dir,
        layout.code_dir,
    ]
    for directory in expected:
        assert directory.is_dir(), directory
        assert _mode(directory) == 0o700, directory
    assert not layout.failure_file.exists()


def test_create_tightens_a_directory_that_already_exists(tmp_path: Path) -> None:
    layout = JobLayout(tmp_path / "job")
    layout.model_dir.mkdir(parents=True, mode=0o755)
    layout.model_dir.chmod(0o755)
    layout.create([])
    assert _mode(layout.model_dir) == 0o700


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/etc", "-x", "_x", "a.b", "x" * 65])
def test_unsafe_channel_names_are_refused(tmp_path: Path, name: str) -> None:
    layout = JobLayout(tmp_path / "job")
    with pytest.raises(ValueError, match="channel name"):
        layout.channel_dir(name)
    with pytest.raises(ValueError, match="channel name"):
        layout.create([name])
    assert not (tmp_path / "job").exists()


def test_a_relative_root_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        JobLayout(Path("job"))


# --- placement --------------------------------------------------------------------------------


def test_world_size_counts_processes_on_every_host() -> None:
    assert _placement().world_size == 2
    assert _placement(procs_per_host=4, rank=7, local_rank=3).world_size == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"current_host": "algo-3"}, "not one of the hosts"),
        ({"rank": 2}, "rank 2"),
        ({"rank": -1}, "rank -1"),
        ({"local_rank": 1}, "local_rank 1"),
        ({"master_port": 0}, "master_port"),
        ({"hosts": ("algo-1", "algo-1"), "current_host": "algo-1", "rank": 0}, "unique"),
        ({"num_cpus": 0}, "num_cpus"),
    ],
)
def test_inconsistent_placements_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _placement(**overrides)


# --- environment ------------------------------------------------------------------------------


def test_exact_environment_of_the_second_host() -> None:
    layout = JobLayout(ROOT)
    env = runtime_env(
        layout,
        _placement(),
        entry_point="train.py",
        hyperparameters={"epochs": 10, "lr": 0.1, "optimizer": "adam"},
        channels=["validation", "train"],
        job_name="churn-1",
        user_args=["--verbose"],
    )
    expected_data_config = {
        "train": {"TrainingInputMode": "File"},
        "validation": {"TrainingInputMode": "File"},
    }
    expected_resource = {
        "current_host": "algo-2",
        "hosts": ["algo-1", "algo-2"],
        "network_interface_name": "lo",
    }
    training_env = json.loads(env.pop("SM_TRAINING_ENV"))
    assert env == {
        "SM_HOSTS": '["algo-1","algo-2"]',
        "SM_NETWORK_INTERFACE_NAME": "lo",
        "SM_HPS": '{"epochs":10,"lr":0.1,"optimizer":"adam"}',
        "SM_USER_ENTRY_POINT": "train.py",
        "SM_FRAMEWORK_PARAMS": "{}",
        "SM_RESOURCE_CONFIG": json.dumps(expected_resource, separators=(",", ":")),
        "SM_INPUT_DATA_CONFIG": json.dumps(expected_data_config, separators=(",", ":")),
        "SM_OUTPUT_DATA_DIR": "/jobs/j-1/output/data",
        "SM_CHANNELS": '["train","validation"]',
        "SM_CURRENT_HOST": "algo-2",
        "SM_MODULE_NAME": "train",
        "SM_LOG_LEVEL": "20",
        "SM_FRAMEWORK_MODULE": "",
        "SM_INPUT_DIR": "/jobs/j-1/input",
        "SM_INPUT_CONFIG_DIR": "/jobs/j-1/input/config",
        "SM_OUTPUT_DIR": "/jobs/j-1/output",
        "SM_NUM_CPUS": "4",
        "SM_NUM_GPUS": "0",
        "SM_MODEL_DIR": "/jobs/j-1/model",
        "SM_MODULE_DIR": "/jobs/j-1/code",
        "SM_USER_ARGS": '["--epochs","10","--lr","0.1","--optimizer","adam","--verbose"]',
        "SM_OUTPUT_INTERMEDIATE_DIR": "/jobs/j-1/output/intermediate",
        "SM_CHECKPOINT_DIR": "/jobs/j-1/checkpoints",
        "SM_CHANNEL_TRAIN": "/jobs/j-1/input/data/train",
        "SM_CHANNEL_VALIDATION": "/jobs/j-1/input/data/validation",
        "SM_HP_EPOCHS": "10",
        "SM_HP_LR": "0.1",
        "SM_HP_OPTIMIZER": "adam",
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "10.0.0.5",
        "MASTER_PORT": "29500",
        "TRAINING_JOB_NAME": "churn-1",
        "PYTHONUNBUFFERED": "1",
    }
    assert training_env == {
        "additional_framework_parameters": {},
        "channel_input_dirs": {
            "train": "/jobs/j-1/input/data/train",
            "validation": "/jobs/j-1/input/data/validation",
        },
        "current_host": "algo-2",
        "framework_module": None,
        "hosts": ["algo-1", "algo-2"],
        "hyperparameters": {"epochs": 10, "lr": 0.1, "optimizer": "adam"},
        "input_config_dir": "/jobs/j-1/input/config",
        "input_data_config": expected_data_config,
        "input_dir": "/jobs/j-1/input",
        "is_master": False,
        "job_name": "churn-1",
        "log_level": 20,
        "master_hostname": "algo-1",
        "model_dir": "/jobs/j-1/model",
        "module_dir": "/jobs/j-1/code",
        "module_name": "train",
        "network_interface_name": "lo",
        "num_cpus": 4,
        "num_gpus": 0,
        "output_data_dir": "/jobs/j-1/output/data",
        "output_dir": "/jobs/j-1/output",
        "output_intermediate_dir": "/jobs/j-1/output/intermediate",
        "resource_config": expected_resource,
        "user_entry_point": "train.py",
    }


def test_every_value_is_a_string_and_the_first_host_is_master() -> None:
    env = runtime_env(
        JobLayout(ROOT),
        _placement(current_host="algo-1", rank=0, num_gpus=2),
        entry_point="pkg/train.py",
        hyperparameters={"nested": {"b": 1, "a": [1, 2]}},
        channels=[],
        job_name="j",
    )
    assert all(isinstance(v, str) for v in env.values())
    assert json.loads(env["SM_TRAINING_ENV"])["is_master"] is True
    assert env["SM_NUM_GPUS"] == "2"
    assert env["SM_CHANNELS"] == "[]"
    assert env["SM_HP_NESTED"] == '{"a":[1,2],"b":1}'


def test_sm_hp_values_are_json_unless_strings() -> None:
    env = runtime_env(
        JobLayout(ROOT),
        _placement(),
        entry_point="train.py",
        hyperparameters={
            "flag": True,
            "off": False,
            "none": None,
            "n": 3,
            "x": 1e-05,
            "layers": [64, 32],
            "name": "true",
            "quoted": 'a "b"',
        },
        channels=["train"],
        job_name="j",
    )
    assert env["SM_HP_FLAG"] == "true"
    assert env["SM_HP_OFF"] == "false"
    assert env["SM_HP_NONE"] == ""
    assert env["SM_HP_N"] == "3"
    assert env["SM_HP_X"] == "1e-05"
    assert env["SM_HP_LAYERS"] == "[64,32]"
    assert env["SM_HP_NAME"] == "true"
    assert env["SM_HP_QUOTED"] == 'a "b"'
    assert json.loads(env["SM_HPS"])["flag"] is True


def test_a_dashed_channel_gets_the_toolkit_name_and_a_shell_friendly_one() -> None:
    env = runtime_env(
        JobLayout(ROOT),
        _placement(),
        entry_point="train.py",
        hyperparameters={},
        channels=["train-set"],
        job_name="j",
    )
    assert env["SM_CHANNEL_TRAIN-SET"] == "/jobs/j-1/input/data/train-set"
    assert env["SM_CHANNEL_TRAIN_SET"] == "/jobs/j-1/input/data/train-set"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": ["a-b", "a_b"]}, "collide"),
        ({"channels": ["train", "train"]}, "unique"),
        ({"channels": [".."]}, "channel name"),
        ({"hyperparameters": {"lr": 1, "LR": 2}}, "collide"),
        ({"hyperparameters": {"a=b": 1}}, "hyperparameter name"),
        ({"hyperparameters": {"sagemaker_program": "x"}}, "reserved"),
        ({"hyperparameters": {"lr": float("nan")}}, "JSON"),
        ({"entry_point": "../evil.py"}, "entry_point"),
        ({"entry_point": "/abs/train.py"}, "entry_point"),
        ({"entry_point": ""}, "entry_point"),
    ],
)
def test_inputs_that_would_corrupt_the_environment_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "entry_point": "train.py",
        "hyperparameters": {},
        "channels": ["train"],
        "job_name": "j",
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        runtime_env(JobLayout(ROOT), _placement(), **arguments)  # type: ignore[arg-type]


# --- config files -----------------------------------------------------------------------------


def test_config_files_match_what_sagemaker_writes(tmp_path: Path) -> None:
    layout = JobLayout(tmp_path / "job")
    layout.create(["train"])
    write_config(
        layout,
        _placement(),
        hyperparameters={"epochs": 10, "lr": 0.1, "optimizer": "adam", "flag": True},
        channels={"train": {"ContentType": "text/csv"}, "test": {}},
    )
    config = layout.config_dir
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "epochs": "10",
        "flag": "true",
        "lr": "0.1",
        "optimizer": "adam",
    }
    assert json.loads((config / "resourceconfig.json").read_text()) == {
        "current_host": "algo-2",
        "hosts": ["algo-1", "algo-2"],
        "network_interface_name": "lo",
    }
    assert json.loads((config / "inputdataconfig.json").read_text()) == {
        "test": {"TrainingInputMode": "File"},
        "train": {"TrainingInputMode": "File", "ContentType": "text/csv"},
    }
    for name in ("hyperparameters.json", "resourceconfig.json", "inputdataconfig.json"):
        assert _mode(config / name) == 0o600


def test_pipe_mode_is_refused(tmp_path: Path) -> None:
    layout = JobLayout(tmp_path / "job")
    layout.create([])
    with pytest.raises(ValueError, match="'File'"):
        write_config(
            layout,
            _placement(),
            hyperparameters={},
            channels={"train": {"TrainingInputMode": "Pipe"}},
        )


# --- command-line arguments -------------------------------------------------------------------


def test_hyperparameter_args_follow_the_toolkit() -> None:
    args = hyperparameter_args(
        {
            "lr": 0.1,
            "epochs": 10,
            "b": 32,
            "use_cuda": True,
            "opts": {"z": 1, "a": "x"},
            "none": None,
            "layers": [64, 32],
        }
    )
    assert args == [
        "-b",
        "32",
        "--epochs",
        "10",
        "--layers",
        "[64, 32]",
        "--lr",
        "0.1",
        "--none",
        "",
        "--opts",
        "a=x,z=1",
        "--use_cuda",
        "True",
    ]


def test_no_hyperparameters_no_arguments() -> None:
    assert hyperparameter_args({}) == []


# --- user environment -------------------------------------------------------------------------


def test_reserved_names_cover_the_distributed_contract() -> None:
    assert {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"} <= (
        reserved_env_names()
    )


def test_ordinary_user_variables_pass() -> None:
    check_user_env({"WANDB_MODE": "offline", "OMP_NUM_THREADS": "2", "_X": "a=b c"})


@pytest.mark.parametrize(
    "name",
    ["SM_MODEL_DIR", "SM_ANYTHING", "sm_model_dir", "SHIPYARD_TOKEN", "RANK", "MASTER_PORT"],
)
def test_contract_variables_are_reserved(name: str) -> None:
    with pytest.raises(ValueError, match=rf"'{name}' is reserved"):
        check_user_env({"OK": "1", name: "x"})


def test_the_first_offender_is_named() -> None:
    with pytest.raises(ValueError, match="'WORLD_SIZE'"):
        check_user_env({"OK": "1", "WORLD_SIZE": "9", "RANK": "0"})


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A=B", "A B", "X" * 129])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="names are"):
        check_user_env({name: "x"})


def test_nul_in_a_value_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'TOKEN'.*NUL"):
        check_user_env({"TOKEN": "a\x00b"})


def test_the_runtime_env_is_all_reserved() -> None:
    """Nothing the runtime sets can be overridden by a user variable."""
    env = runtime_env(
        JobLayout(ROOT),
        _placement(),
        entry_point="train.py",
        hyperparameters={"lr": 0.1},
        channels=["train"],
        job_name="j",
    )
    for name in env:
        with pytest.raises(ValueError, match="reserved"):
            check_user_env({name: "x"})
