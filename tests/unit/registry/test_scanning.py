"""Model artifact scanning: every payload is caught, benign models pass, nothing is unpickled.

The corpus is built here, at test time: each payload would create ``MARKER`` if anything
unpickled it, and the module checks at the end that it never appeared.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from shipyard.registry.scanning import Finding, ScanLimits, ScanReport, scan_bytes, scan_file

# --- the corpus ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("marker") / "MARKER"


def _reducing(func: Callable[..., Any], *args: Any) -> object:
    """An object whose unpickling calls ``func(*args)``."""

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (func, args)

    return Payload()


def _payload(kind: str, marker: Path) -> object:
    touch = f"touch {marker}"
    return {
        "posix.system": _reducing(os.system, touch),  # os.system pickles as posix.system
        "os.system": _reducing(os.system, touch),  # respelt below
        "builtins.eval": _reducing(eval, f"__import__('os').system({touch!r})"),
        "builtins.exec": _reducing(builtins.exec, f"import os; os.system({touch!r})"),
        "subprocess.Popen": _reducing(subprocess.Popen, ["touch", str(marker)]),
    }[kind]


KINDS = ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen"]


def _respell(kind: str, data: bytes) -> bytes:
    """``os.system`` is ``posix.system`` to pickle; a hand-made pickle may still say ``os``."""
    if kind != "os.system":
        return data
    assert b"cposix\nsystem\n" in data
    return data.replace(b"cposix\nsystem\n", b"cos\nsystem\n")


def _raw_pickle(kind: str, marker: Path) -> bytes:
    protocol = 2 if kind == "os.system" else 4
    return _respell(kind, pickle.dumps(_payload(kind, marker), protocol=protocol))


def _joblib_dump(kind: str, marker: Path, *, compressed: bool) -> bytes:
    """A joblib dump with arrays before and after the payload, as a fitted model has."""
    value = {"coef": np.arange(50.0), "model": _payload(kind, marker), "tail": np.ones(3)}
    buf = io.BytesIO()
    joblib.dump(value, buf, protocol=2)
    data = _respell(kind, buf.getvalue())
    return zlib.compress(data, 3) if compressed else data  # joblib's zlib format


def _tar(members: dict[str, bytes], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _malicious(form: str, kind: str, marker: Path) -> tuple[str, bytes, str]:
    """(file name, bytes, the member path the finding must name) for one payload form."""
    if form == "pickle":
        return "model.pkl", _raw_pickle(kind, marker), "model.pkl"
    if form == "joblib":
        return "model.joblib", _joblib_dump(kind, marker, compressed=False), "model.joblib"
    if form == "joblib-zlib":
        return "model.joblib", _joblib_dump(kind, marker, compressed=True), "model.joblib"
    if form == "tar.gz":
        joblib_file = _joblib_dump(kind, marker, compressed=True)
        data = _tar({"model.joblib": joblib_file, "code/inference.py": b"x = 1\n"}, gz=True)
        return "model.tar.gz", data, "model.tar.gz!/model.joblib"
    if form == "torch-zip":
        members = {
            "archive/data.pkl": _raw_pickle(kind, marker),
            "archive/version": b"3\n",
            "archive/data/0": os.urandom(64),
        }
        return "model.pt", _zip(members), "model.pt!/archive/data.pkl"
    assert form == "nested-tar"
    inner = _tar({"model.joblib": _joblib_dump(kind, marker, compressed=False)})
    middle = _tar({"inner.tar": inner, "README": b"nested\n"})
    outer = _tar({"nested/middle.tar": middle}, gz=True)
    return "outer.tar.gz", outer, "outer.tar.gz!/nested/middle.tar!/inner.tar!/model.joblib"


FORMS = ["pickle", "joblib", "joblib-zlib", "tar.gz", "torch-zip", "nested-tar"]


def _dangerous(report: ScanReport) -> list[Finding]:
    return [f for f in report.findings if f.severity == "dangerous"]


def _not_info(report: ScanReport) -> list[Finding]:
    return [f for f in report.findings if f.severity != "info"]


# --- every payload is caught -----------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_payload_is_dangerous_and_named(form: str, kind: str, marker: Path, tmp_path: Path) -> None:
    name, data, member = _malicious(form, kind, marker)
    artifact = tmp_path / name
    artifact.write_bytes(data)

    report = scan_file(artifact)

    assert report.dangerous, report.findings
    hits = [f for f in _dangerous(report) if f.path == member and kind in f.detail]
    assert hits, f"no dangerous finding naming {kind} at {member}: {report.findings}"
    assert hits[0].kind == "unsafe-global"
    assert not marker.exists()


@pytest.mark.parametrize("compress", [("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
def test_payload_in_every_joblib_compression(compress: tuple[str, int], marker: Path) -> None:
    buf = io.BytesIO()
    value = {"coef": np.arange(20.0), "model": _payload("posix.system", marker)}
    joblib.dump(value, buf, compress=compress)

    report = scan_bytes("model.joblib", buf.getvalue())

    assert [f.path for f in _dangerous(report)] == ["model.joblib"]
    assert "posix.system" in _dangerous(report)[0].detail


def test_payload_in_legacy_joblib_zfile(marker: Path) -> None:
    from joblib.numpy_pickle_compat import write_zfile

    buf = io.BytesIO()
    write_zfile(buf, _raw_pickle("subprocess.Popen", marker))
    report = scan_bytes("model.pkl", buf.getvalue())
    assert any("subprocess.Popen" in f.detail for f in _dangerous(report))


def test_memo_indirected_stack_global_is_resolved(marker: Path) -> None:
    cmd = f"touch {marker}".encode()
    # PROTO 4, 'os' MEMOIZE, 'system' MEMOIZE, STACK_GLOBAL MEMOIZE POP, BINGET 2, cmd, TUPLE1
    data = (
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x940h\x02\x8c"
        + bytes([len(cmd)])
        + cmd
        + b"\x85R."
    )
    report = scan_bytes("weights.bin", data)
    assert any("os.system" in f.detail for f in _dangerous(report))


def test_global_named_at_load_time_is_dangerous() -> None:
    # The module name is str(b"os", "ascii"), computed by the unpickler: no scanner can name
    # it, so it must not pass as "unknown".
    data = (
        b"\x80\x04\x8c\x08builtins\x8c\x03str\x93C\x02os\x8c\x05ascii\x86R"
        b"\x8c\x06system\x93\x8c\x04true\x85R."
    )
    report = scan_bytes("model.pkl", data)
    assert [f.kind for f in _dangerous(report)] == ["unresolved-global"]


def test_payload_hidden_as_joblib_array_bytes_is_found(marker: Path) -> None:
    """A fake NumpyArrayWrapper whose "array bytes" are opcodes: harmless to joblib.load,
    a payload to pickle.load. The scan reads the file both ways."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    cmd = f"touch {marker}".encode()
    payload_ops = b"cposix\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R0"
    wrapper = NumpyArrayWrapper(
        np.ndarray, (len(payload_ops),), "C", np.dtype("u1"), numpy_array_alignment_bytes=None
    )
    head = pickle.dumps(wrapper, protocol=2)
    assert head.endswith(b".")
    data = head[:-1] + payload_ops + b"."

    report = scan_bytes("model.pkl", data)

    details = [f.detail for f in _dangerous(report)]
    assert any("posix.system" in d and "pickle.load" in d for d in details), report.findings


def test_pickle_that_also_looks_like_a_tar_is_read_as_a_pickle(marker: Path) -> None:
    payload = _raw_pickle("builtins.eval", marker)
    data = payload + b"\0" * (257 - len(payload)) + b"ustar\x0000" + b"\0" * 250
    report = scan_bytes("model.pkl", data)
    assert any("builtins.eval" in f.detail for f in _dangerous(report))


def test_copyreg_extension_registration_is_dangerous() -> None:
    data = b"ccopyreg\nadd_extension\n(Vos\nVsystem\nI1\ntR0\x82\x01."
    report = scan_bytes("model.pkl", data)
    assert any("copyreg.add_extension" in f.detail for f in _dangerous(report))


# --- benign artifacts pass -------------------------------------------------------------------


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=120, n_features=8, random_state=0)
    forest = RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0)
    return {
        "logistic": LogisticRegression(max_iter=300).fit(x, y),
        "pipeline": Pipeline([("scale", StandardScaler()), ("forest", forest)]).fit(x, y),
    }


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
@pytest.mark.parametrize("model", ["logistic", "pipeline"])
def test_sklearn_joblib_dumps_are_clean(
    model: str, compress: Any, models: dict[str, Any], tmp_path: Path
) -> None:
    artifact = tmp_path / "model.joblib"
    joblib.dump(models[model], artifact, compress=compress)

    report = scan_file(artifact)

    assert _not_info(report) == []
    assert report.scanned_files == 1


def test_plain_pickles_of_models_and_arrays_are_clean(models: dict[str, Any]) -> None:
    arrays = {"w": np.arange(100.0), "b": np.zeros((3, 4), np.float32), "i": np.arange(5)}
    for protocol in (2, 4, 5):
        for value in (arrays, models["pipeline"]):
            report = scan_bytes("model.pkl", pickle.dumps(value, protocol=protocol))
            assert _not_info(report) == [], (protocol, report.findings)


def test_joblib_dump_with_object_array_is_clean() -> None:
    buf = io.BytesIO()
    joblib.dump({"labels": np.array(["yes", "no", None], dtype=object), "w": np.ones(4)}, buf)
    assert _not_info(scan_bytes("labels.joblib", buf.getvalue())) == []


def test_torch_state_dict_is_clean(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    artifact = tmp_path / "model.pt"
    torch.save(net.state_dict(), artifact)

    report = scan_file(artifact)

    assert _not_info(report) == []
    assert report.scanned_files >= 2  # data.pkl and the small metadata members


def test_bytes_a_pickle_hands_to_torch_load_are_scanned(marker: Path) -> None:
    """``pickle.dumps(tensor)`` holds ``torch.save`` output that loading loads in turn."""
    inner = _raw_pickle("builtins.exec", marker)
    data = (
        b"\x80\x02ctorch.storage\n_load_from_bytes\nB"
        + len(inner).to_bytes(4, "little")
        + inner
        + b"\x85R."
    )
    report = scan_bytes("model.pkl", data)
    assert [f.path for f in _dangerous(report)] == [f"model.pkl!/<bytes at {data.index(inner)}>"]

    torch = pytest.importorskip("torch")
    assert _not_info(scan_bytes("tensor.pkl", pickle.dumps(torch.ones(3)))) == []


def test_text_file_and_model_tarball_are_clean(models: dict[str, Any], tmp_path: Path) -> None:
    assert scan_bytes("README.md", b"# churn model\n").findings == []

    buf = io.BytesIO()
    joblib.dump(models["pipeline"], buf, compress=3)
    members = {
        "model.joblib": buf.getvalue(),
        "code/inference.py": b"def model_fn(model_dir):\n    return None\n",
        "code/requirements.txt": b"scikit-learn\n",
        "metadata.json": b'{"framework": "sklearn"}',
    }
    artifact = tmp_path / "model.tar.gz"
    artifact.write_bytes(_tar(members, gz=True))

    report = scan_file(artifact)

    assert report.findings == []
    assert report.scanned_files == 4
    assert report.scanner.startswith("picklescan 1.0.5")


# --- malformed and hostile inputs ------------------------------------------------------------


def test_truncated_pickle_is_suspicious_not_a_crash(models: dict[str, Any]) -> None:
    data = pickle.dumps(models["pipeline"], protocol=4)
    report = scan_bytes("model.pkl", data[: len(data) // 2])
    assert not report.dangerous
    assert [f.kind for f in report.findings] == ["malformed-pickle"]
    assert report.findings[0].severity == "suspicious"


def test_truncated_joblib_array_is_suspicious() -> None:
    buf = io.BytesIO()
    joblib.dump({"w": np.arange(1000.0)}, buf)
    report = scan_bytes("model.joblib", buf.getvalue()[:-100])
    assert not report.dangerous
    assert "malformed-pickle" in [f.kind for f in report.findings]


def test_traversal_member_is_scanned_without_writing(
    marker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    data = _tar({"../evil.pkl": _raw_pickle("posix.system", marker), "/abs.txt": b"x"})

    report = scan_bytes("evil.tar", data)

    assert [f.path for f in _dangerous(report)] == ["evil.tar!/../evil.pkl"]
    flagged = {f.path for f in report.findings if f.kind == "unsafe-member-path"}
    assert flagged == {"evil.tar!/../evil.pkl", "evil.tar!//abs.txt"}
    assert list((tmp_path / "work").rglob("*")) == [work]
    assert not (tmp_path / "evil.pkl").exists()


def test_zip_bomb_beyond_the_bound_is_not_fully_scanned() -> None:
    bomb = _zip({"model.pkl": pickle.dumps(bytes(32 * 1024**2), protocol=4)})
    assert len(bomb) < 100 * 1024

    report = scan_bytes("bomb.zip", bomb, limits=ScanLimits(max_total_bytes=4 * 1024**2))

    assert not report.dangerous
    assert [(f.path, f.kind) for f in report.findings] == [
        ("bomb.zip!/model.pkl", "not-fully-scanned")
    ]
    assert report.findings[0].severity == "suspicious"


def test_gzip_bomb_in_a_tarball_is_not_fully_scanned() -> None:
    bomb = _tar({"weights.raw": bytes(32 * 1024**2)}, gz=True)
    report = scan_bytes("model.tar.gz", bomb, limits=ScanLimits(max_total_bytes=4 * 1024**2))
    assert [f.kind for f in report.findings] == ["not-fully-scanned"]


def test_nesting_and_member_bounds(marker: Path) -> None:
    nested = _tar({"model.pkl": _raw_pickle("builtins.eval", marker)})
    for _ in range(3):
        nested = _tar({"layer.tar": nested})
    deep = scan_bytes("deep.tar", nested, limits=ScanLimits(max_depth=2))
    assert [f.kind for f in deep.findings] == ["not-fully-scanned"]
    assert "nested deeper" in deep.findings[0].detail

    many = _tar({f"f{i}.txt": b"x" for i in range(50)})
    report = scan_bytes("many.tar", many, limits=ScanLimits(max_members=10))
    assert [f.kind for f in report.findings] == ["not-fully-scanned"]


def test_garbage_claiming_to_be_archives_is_suspicious() -> None:
    for name, data in [
        ("model.pt", b"PK\x03\x04 not really a zip"),
        ("model.tar.gz", b"\x1f\x8b\x08\x00 not really gzip"),
        ("model.joblib", b"x\x9c not really zlib"),
        ("model.joblib", b"\x04\x22\x4d\x18 lz4, which needs a package we do not ship"),
    ]:
        report = scan_bytes(name, data)
        assert not report.dangerous, name
        assert [f.severity for f in report.findings] == ["suspicious"], (name, report.findings)


def test_no_payload_ever_ran(marker: Path) -> None:
    """Last on purpose: after every scan above, the marker must still be absent."""
    assert not marker.exists()
