"""Tests of rustoptim.save / rustoptim.load (python/rustoptim/serialization.py)."""

from __future__ import annotations

import collections
import copy
import io
import json
import math
import os
import pickle
import stat
import struct
import subprocess
import sys
import threading
import warnings
import zipfile
import zlib

import numpy as np
import pytest

import crafted_files
from load_probe import memory_bound
from load_probe import run as run_probe
from optimizer_table import CONFIG_IDS, CONFIGS, param_shape
from rustoptim import serialization
from rustoptim.errors import FileFormatError, StateDictError
from rustoptim.serialization import load, save

# --------------------------------------------------------------------------- helpers


def assert_same(a, b, where="value"):
    """``a`` and ``b`` are equal, of the same types all the way down, floats and arrays bit for bit."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype.str == b.dtype.str and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, np.generic):
        assert a.dtype.str == b.dtype.str and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert struct.pack(">d", a) == struct.pack(">d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, complex):
        assert_same(a.real, b.real, where)
        assert_same(a.imag, b.imag, where)
    elif isinstance(a, dict):
        assert len(a) == len(b), where
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert_same(ka, kb, f"{where} key {ka!r}")
            assert_same(va, vb, f"{where}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def round_trip(value, tmp_path):
    path = tmp_path / "state.rop"
    save(value, path)
    return load(path)


def float_from_bits(bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(bits))[0]


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def craft(members, version=1, compression=zipfile.ZIP_STORED) -> bytes:
    """An archive with the given (name, bytes) members and a valid trailer, built from the documented format."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name", when a test asks for one
        zf.comment = b"rustoptim-state/%d crc32:00000000" % version
        for name, data in members:
            zf.writestr(name, data)
    data = buffer.getvalue()
    return data[:-8] + b"%08x" % zlib.crc32(data[:-8])


def header(root, arrays=0, **overrides) -> bytes:
    fields = {"format": "rustoptim-state", "version": 1, "arrays": arrays, "root": root}
    fields.update(overrides)
    return json.dumps(fields).encode()


def adam_state_dict():
    """What torch.optim.Adam([w1, b1, w2], lr=1e-3, amsgrad=True).state_dict() holds after 3 steps, as NumPy."""
    rng = np.random.default_rng(0)
    shapes = [(64, 2), (64,), (2, 64)]
    state = {}
    for i, shape in enumerate(shapes):
        state[i] = {
            "step": 3.0,
            "exp_avg": rng.standard_normal(shape).astype(np.float32),
            "exp_avg_sq": rng.random(shape).astype(np.float32),
            "max_exp_avg_sq": rng.random(shape).astype(np.float32),
        }
    group = {
        "lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": True,
        "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
        "fused": None, "decoupled_weight_decay": False, "params": [0, 1, 2],
    }
    return {"state": state, "param_groups": [group]}


def lbfgs_state_dict():
    """What torch.optim.LBFGS(..., line_search_fn="strong_wolfe").state_dict() holds mid-run, as NumPy."""
    rng = np.random.default_rng(1)
    n = 50
    return {
        "state": {
            0: {
                "func_evals": 17, "n_iter": 12,
                "d": rng.standard_normal(n), "t": 1.0,
                "old_dirs": [rng.standard_normal(n) for _ in range(5)],
                "old_stps": [rng.standard_normal(n) for _ in range(5)],
                "ro": [float(x) for x in rng.random(5)],
                "H_diag": 0.37142857142857144,
                "prev_flat_grad": rng.standard_normal(n),
                "prev_loss": 0.012345678901234568,
                "al": [None] * 5,
            }
        },
        "param_groups": [{
            "lr": 1, "max_iter": 20, "max_eval": 25, "tolerance_grad": 1e-07,
            "tolerance_change": 1e-09, "history_size": 100, "line_search_fn": "strong_wolfe",
            "params": [0],
        }],
    }


# --------------------------------------------------------------------------- round trips


NAN_PAYLOAD = float_from_bits("7ff8000000000123")

VALUES = {
    "none": None, "true": True, "false": False,
    "int_zero": 0, "int_negative": -7, "int_63bit_max": 2**63 - 1, "int_63bit_min": -(2**63),
    "int_64bit": 2**63, "int_below_min": -(2**63) - 1, "int_huge": 3**20000, "int_huge_negative": -(10**5000),
    "float_zero": 0.0, "float_negative_zero": -0.0, "float_small": 1e-08, "float_subnormal": 5e-324,
    "float_max": 1.7976931348623157e308, "float_third": 1 / 3, "float_integral": 1e16,
    "nan": math.nan, "negative_nan": -math.nan, "nan_payload": NAN_PAYLOAD, "inf": math.inf, "negative_inf": -math.inf,
    "complex": complex(1.5, -0.0), "complex_special": complex(math.nan, -math.inf),
    "str_empty": "", "str_unicode": "Adam – β₁ ü 🚀", "str_lone_surrogate": "\ud800", "str_json_like": '{"array": 0}',
    "list_empty": [], "tuple_empty": (), "dict_empty": {}, "tuple_one": (1,),
    "nested": [(1, [2.5, (None, "x")]), {"a": ({},)}],
    "np_float64": np.float64(0.1), "np_float32": np.float32(0.1), "np_float16": np.float16(-2.5),
    "np_longdouble": np.longdouble(1) / 3, "np_int8": np.int8(-3), "np_uint64": np.uint64(2**64 - 1),
    "np_int64": np.int64(-(2**63)), "np_bool": np.bool_(True), "np_complex64": np.complex64(1 - 2j),
    "np_float64_nan": np.float64(NAN_PAYLOAD),
}


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_round_trip_value(value, tmp_path):
    assert_same(value, round_trip(value, tmp_path))
    assert_same({"k": [value, (value,)]}, round_trip({"k": [value, (value,)]}, tmp_path))


ARRAY_DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128", ">f8", ">i4", "<c8",
]
ARRAY_SHAPES = [(), (0,), (3, 0, 2), (7,), (2, 3, 4)]


@pytest.mark.parametrize("shape", ARRAY_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ARRAY_DTYPES)
def test_round_trip_array(dtype, shape, tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, size=math.prod(shape) * np.dtype(dtype).itemsize, dtype=np.uint8)
    array = raw.view(dtype).reshape(shape)  # every bit pattern, NaNs with payloads included
    loaded = round_trip(array, tmp_path)
    assert_same(array, loaded)
    assert loaded.flags.writeable and loaded.flags.c_contiguous


LAYOUTS = {
    "fortran": lambda a: np.asfortranarray(a),
    "transposed": lambda a: a.T,
    "strided": lambda a: a[::2, 1::3],
    "reversed": lambda a: a[::-1, ::-1],
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_round_trip_array_layouts(layout, tmp_path):
    array = layout(np.arange(60, dtype=np.float64).reshape(6, 10) * 0.1)
    loaded = round_trip(array, tmp_path)
    assert_same(array, loaded)
    np.testing.assert_array_equal(array, loaded)
    f_only = array.flags.f_contiguous and not array.flags.c_contiguous
    assert loaded.flags.f_contiguous if f_only else loaded.flags.c_contiguous


@pytest.mark.parametrize("make", [adam_state_dict, lbfgs_state_dict])
def test_round_trip_optimizer_state_dicts(make, tmp_path):
    state_dict = make()
    assert_same(state_dict, round_trip(state_dict, tmp_path))


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_optimizer_resumes_from_file(cls, kwargs, tmp_path):
    def make_optimizer(params):
        return cls(params, **kwargs)

    rng = np.random.default_rng(5)
    params = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(param_shape(cls, (5,)))]
    optimizer = make_optimizer(params)
    for _ in range(3):
        optimizer.step(grads=[rng.standard_normal(p.shape).astype(p.dtype) for p in params])
    state_dict = optimizer.state_dict()
    loaded = round_trip(state_dict, tmp_path)
    assert_same(state_dict, loaded)

    resumed_params = [p.copy() for p in params]
    resumed = make_optimizer(resumed_params)
    resumed.load_state_dict(loaded)
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    optimizer.step(grads=grads)
    resumed.step(grads=grads)
    for p, q in zip(params, resumed_params):
        assert p.tobytes() == q.tobytes()


def test_key_types_and_order(tmp_path):
    keys = [3, "b", 1, 2.5, -1, None, "a", (1, "x"), False, math.inf, 10**30, np.int32(7), 1 + 1j, ()]
    value = {k: i for i, k in enumerate(keys)}
    loaded = round_trip(value, tmp_path)
    assert_same(value, loaded)
    assert [type(k) for k in loaded] == [type(k) for k in keys]
    reversed_value = dict(reversed(list(value.items())))
    assert list(round_trip(reversed_value, tmp_path)) == list(reversed_value)


def test_shared_array_loads_as_one_object(tmp_path):
    shared, other = np.ones(3), np.ones(3)
    loaded = round_trip({"a": shared, "b": [shared, other]}, tmp_path)
    assert loaded["a"] is loaded["b"][0]
    assert loaded["b"][1] is not loaded["a"]
    with zipfile.ZipFile(tmp_path / "state.rop") as zf:
        assert zf.namelist() == ["header.json", "arrays/0.npy", "arrays/1.npy"]


def test_same_state_dict_same_bytes(tmp_path):
    save(adam_state_dict(), tmp_path / "a.rop")
    save(adam_state_dict(), tmp_path / "b.rop")
    assert (tmp_path / "a.rop").read_bytes() == (tmp_path / "b.rop").read_bytes()


def test_file_is_the_documented_zip(tmp_path):
    save({"step": 3.0, "exp_avg": np.arange(3.0), "betas": (0.9, 0.999)}, tmp_path / "s.rop")
    data = (tmp_path / "s.rop").read_bytes()
    with zipfile.ZipFile(tmp_path / "s.rop") as zf:
        assert zf.namelist() == ["header.json", "arrays/0.npy"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        assert json.loads(zf.read("header.json")) == {
            "format": "rustoptim-state", "version": 1, "arrays": 1,
            "root": {"dict": [["step", 3.0], ["exp_avg", {"array": 0}], ["betas", {"tuple": [0.9, 0.999]}]]},
        }
        np.testing.assert_array_equal(np.load(io.BytesIO(zf.read("arrays/0.npy"))), np.arange(3.0))
        assert zf.comment == b"rustoptim-state/1 crc32:%08x" % zlib.crc32(data[:-8])


@pytest.mark.parametrize("kind", ["str", "pathlib"])
def test_path_types(kind, tmp_path):
    path = str(tmp_path / "s.rop") if kind == "str" else tmp_path / "s.rop"
    save(adam_state_dict(), path)
    assert_same(adam_state_dict(), load(path))


def test_file_objects(tmp_path):
    buffer = io.BytesIO(b"prefix")
    buffer.seek(6)
    save(lbfgs_state_dict(), buffer)
    buffer.seek(6)
    assert_same(lbfgs_state_dict(), load(buffer))
    with open(tmp_path / "s.rop", "wb") as f:
        save(lbfgs_state_dict(), f)
    with open(tmp_path / "s.rop", "rb") as f:
        assert_same(lbfgs_state_dict(), load(f))


def test_non_seekable_stream():
    buffer = io.BytesIO()
    save(adam_state_dict(), buffer)

    class Stream(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self._data.readinto(b)

    assert_same(adam_state_dict(), load(io.BufferedReader(Stream(buffer.getvalue()))))


def test_pickle_and_deepcopy_of_state_dicts():
    for state_dict in (adam_state_dict(), lbfgs_state_dict()):
        assert_same(state_dict, pickle.loads(pickle.dumps(state_dict)))
        assert_same(state_dict, copy.deepcopy(state_dict))


# --------------------------------------------------------------------------- refused at save

Point = collections.namedtuple("Point", "x y")


class Custom:
    pass


class ArraySubclass(np.ndarray):
    pass


UNSAVABLE = {
    "object_array": (np.array([1, "a"], dtype=object), "object"),
    "object_array_of_numbers": (np.array([1.0, 2.0], dtype=object), "object"),
    "str_array": (np.array(["a"]), "dtype <U1"),
    "bytes_array": (np.array([b"a"]), "dtype |S1"),
    "datetime_array": (np.array(["2024-01-01"], dtype="datetime64[D]"), "datetime64"),
    "structured_array": (np.zeros(2, dtype=[("a", "f4")]), "dtype"),
    "array_subclass": (np.arange(3.0).view(ArraySubclass), "ArraySubclass"),
    "set": ({1, 2}, "set"),
    "ordered_dict": (collections.OrderedDict(a=1), "OrderedDict"),
    "namedtuple": (Point(1, 2), "Point"),
    "custom_object": (Custom(), "Custom"),
    "np_str": (np.str_("a"), "dtype <U1"),
    "np_datetime": (np.datetime64("2024-01-01"), "datetime64"),
    "bytes": (b"abc", "bytes"),
    "frozenset_key": ({frozenset(): 1}, "frozenset"),
}


@pytest.mark.parametrize("value, message", UNSAVABLE.values(), ids=UNSAVABLE.keys())
def test_unsavable_values_are_refused(value, message, tmp_path):
    with pytest.raises(TypeError, match=message) as info:
        save({"state": {0: {"exp_avg": value}}}, tmp_path / "s.rop")
    assert "state_dict['state'][0]" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_cycles_are_refused(tmp_path):
    cyclic = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(ValueError, match="contains itself"):
        save(cyclic, tmp_path / "s.rop")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- atomic writes


def _fail_in_write_array(monkeypatch, exception):
    real = serialization.npy.write_array

    def write_half_then_fail(fp, array, *args, **kwargs):
        real(fp, array[: array.size // 2], *args, **kwargs)
        raise exception

    monkeypatch.setattr(serialization.npy, "write_array", write_half_then_fail)


def _fail_in(module, name, exception):
    def fail(monkeypatch):
        def raise_(*args, **kwargs):
            raise exception

        monkeypatch.setattr(module, name, raise_)

    return fail


FAILURES = {
    "write_array_oserror": lambda mp: _fail_in_write_array(mp, OSError(28, "No space left on device")),
    "write_array_keyboard_interrupt": lambda mp: _fail_in_write_array(mp, KeyboardInterrupt()),
    "fsync": _fail_in(os, "fsync", OSError(5, "Input/output error")),
    "replace": _fail_in(os, "replace", PermissionError(13, "Permission denied")),
}


@pytest.mark.parametrize("exists", [True, False], ids=["existing_target", "new_target"])
@pytest.mark.parametrize("inject", FAILURES.values(), ids=FAILURES.keys())
def test_failed_save_leaves_target_and_no_temp_file(inject, exists, tmp_path, monkeypatch):
    target = tmp_path / "state.rop"
    if exists:
        save({"old": np.arange(4.0)}, target)
    before = target.read_bytes() if exists else None
    inject(monkeypatch)
    with pytest.raises(BaseException) as info:
        save(adam_state_dict(), target)
    assert isinstance(info.value, (OSError, KeyboardInterrupt))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == (["state.rop"] if exists else [])
    if exists:
        assert target.read_bytes() == before
        assert_same({"old": np.arange(4.0)}, load(target))


def test_save_replaces_existing_file(tmp_path):
    target = tmp_path / "state.rop"
    save({"old": 1}, target)
    save({"new": 2}, target)
    assert load(target) == {"new": 2}
    assert os.listdir(tmp_path) == ["state.rop"]


def test_save_into_missing_directory(tmp_path):
    target = tmp_path / "missing" / "s.rop"
    with pytest.raises(FileNotFoundError) as info:
        save({}, target)
    assert info.value.filename == str(target)  # the user's path, not the temporary file's
    assert str(target) in str(info.value) and "rustoptim-tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444 | 0o200])
def test_resave_keeps_the_file_mode(mode, tmp_path):
    target = tmp_path / "state.rop"
    save({"old": 1}, target)
    os.chmod(target, mode)
    old_umask = os.umask(0o077)  # the umask must not narrow the kept mode either
    try:
        save({"new": 2}, target)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    assert load(target) == {"new": 2}


def test_new_file_gets_the_umask_mode(tmp_path):
    old_umask = os.umask(0o027)
    try:
        save({}, tmp_path / "new.rop")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.rop").st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_read_only_file_is_not_replaced(tmp_path):
    target = tmp_path / "state.rop"
    save({"old": 1}, target)
    os.chmod(target, 0o444)
    with pytest.raises(PermissionError) as info:
        save({"new": 2}, target)
    assert info.value.filename == str(target)
    assert load(target) == {"old": 1} and os.listdir(tmp_path) == ["state.rop"]


def test_read_only_file_check(tmp_path, monkeypatch):
    """The same check, seen from a non-root user (os.access says no)."""
    target = tmp_path / "state.rop"
    save({"old": 1}, target)
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False)
    with pytest.raises(PermissionError):
        save({"new": 2}, target)
    monkeypatch.undo()
    assert load(target) == {"old": 1} and os.listdir(tmp_path) == ["state.rop"]


def test_save_through_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "state.rop"
    save({"old": 1}, real)
    os.chmod(real, 0o600)
    link = tmp_path / "link.rop"
    link.symlink_to(os.path.join("real", "state.rop"))  # relative, as `ln -s` makes them
    save({"new": 2}, link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("real", "state.rop")
    assert load(real) == {"new": 2} and stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["link.rop", "real"] and os.listdir(tmp_path / "real") == ["state.rop"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.rop"
    link.symlink_to(tmp_path / "made.rop")
    save({"a": 1}, link)
    assert link.is_symlink() and load(tmp_path / "made.rop") == {"a": 1}


def test_symlink_loop_and_directory_are_refused(tmp_path):
    loop = tmp_path / "loop.rop"
    loop.symlink_to(loop)
    with pytest.raises(OSError) as info:
        save({}, loop)
    assert info.value.filename == str(loop)
    with pytest.raises(IsADirectoryError):
        save({}, tmp_path)
    assert os.listdir(tmp_path) == ["loop.rop"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_save_to_a_fifo_writes_into_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    save({"a": np.arange(3.0)}, fifo)
    reader.join(30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file
    assert_same({"a": np.arange(3.0)}, load(io.BytesIO(received[0])))


KILLED_WRITER = """
import os, sys, time
import numpy as np
from rustoptim import serialization
real = serialization.npy.write_array
def write_then_hang(fp, array, *args, **kwargs):
    real(fp, array, *args, **kwargs)
    print("writing", flush=True)
    time.sleep(600)
serialization.npy.write_array = write_then_hang
serialization.save({"a": np.zeros(1 << 20)}, sys.argv[1])
"""


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are only cleaned up on POSIX")
def test_temporary_files_of_killed_writers_do_not_accumulate(tmp_path):
    target = tmp_path / "state.rop"
    save({"old": 1}, target)
    host = serialization_tmp_host()
    for _ in range(3):
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n"
        writer.kill()  # SIGKILL: no cleanup handler runs
        writer.wait()
        writer.stdout.close()
        # The killed writer's file is left; the one before it was removed by this writer.
        leftovers = [name for name in os.listdir(tmp_path) if name != "state.rop"]
        assert len(leftovers) == 1 and leftovers[0].startswith(f".state.rop.rustoptim-tmp-{host}-{writer.pid}-")
    # Temporary files that must survive: a live writer's (this process), another machine's, another target's.
    alive = f".state.rop.rustoptim-tmp-{host}-{os.getpid()}-{'a' * 12}"
    other_host = f".state.rop.rustoptim-tmp-{'0' * 8 if host != '0' * 8 else '1' * 8}-999999999-{'b' * 12}"
    other_target = f".other.rop.rustoptim-tmp-{host}-999999999-{'c' * 12}"
    for name in (alive, other_host, other_target):
        (tmp_path / name).write_bytes(b"x")
    save({"new": 2}, target)
    assert sorted(os.listdir(tmp_path)) == sorted(["state.rop", alive, other_host, other_target])
    assert load(target) == {"new": 2}


def serialization_tmp_host() -> str:
    from rustoptim import _atomic_file

    return _atomic_file._host_tag()


# --------------------------------------------------------------------------- bad files


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.rop"
    save({"state": {0: {"step": 2.0, "exp_avg": np.linspace(0, 1, 5, dtype=np.float32)}},
          "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}, path)
    return path


def _load_bad(data: bytes, tmp_path, match=None) -> FileFormatError:
    path = tmp_path / "bad.rop"
    path.write_bytes(data)
    with pytest.raises(FileFormatError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.rop")


def test_file_format_error_is_a_value_error():
    assert issubclass(FileFormatError, ValueError) and issubclass(FileFormatError, StateDictError)


FOREIGN = {
    "empty": (lambda: b"", "empty file"),
    "text": (lambda: b"lr = 0.001\nbetas = 0.9, 0.999\n" * 10, "not a ZIP archive"),
    "npy": (lambda: npy_bytes(np.arange(10.0)), "not a ZIP archive"),
    "pickle": (lambda: pickle.dumps(adam_state_dict()), "not a ZIP archive"),
    "npz": (lambda: _npz(a=np.arange(3.0)), "without the rustoptim-state trailer"),
    "other_zip": (lambda: _zip([("readme.txt", b"hello")]), "without the rustoptim-state trailer"),
    "zip_with_header_but_no_trailer": (lambda: _zip([("header.json", header([]))]), "truncated or corrupted"),
    "future_version": (lambda: craft([("header.json", b"{}")], version=2), "newer rustoptim.*version 2"),
    "far_future_version": (lambda: craft([("manifest.cbor", b"\x00")], version=999999), "newer rustoptim"),
    "version_zero": (lambda: craft([("header.json", header([], version=0))], version=0), "unknown state format"),
}


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _zip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("make, message", FOREIGN.values(), ids=FOREIGN.keys())
def test_foreign_files(make, message, tmp_path):
    _load_bad(make(), tmp_path, match=message)


def test_every_truncation_is_detected(good_file):
    data = good_file.read_bytes()
    for length in range(len(data)):
        with pytest.raises(FileFormatError, match="empty file|truncated or corrupted|not a ZIP"):
            load(io.BytesIO(data[:length]))


# How much of the file is kept: a byte count, a fraction, or minus the bytes cut off the end.
@pytest.mark.parametrize("keep", [0, 1, 4, 30, 0.25, 0.5, 0.75, -100, -33, -32, -9, -8, -1])
def test_truncated(keep, good_file, tmp_path):
    data = good_file.read_bytes()
    length = int(keep * len(data)) if isinstance(keep, float) else keep % len(data) if keep < 0 else keep
    _load_bad(data[:length], tmp_path, match="empty file|truncated or corrupted|not a ZIP")


def test_every_flipped_byte_is_detected(good_file):
    data = good_file.read_bytes()
    for position in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= mask
            with pytest.raises(FileFormatError, match="CRC-32|truncated or corrupted"):
                load(io.BytesIO(damaged))


@pytest.mark.parametrize("fraction", [i / 40 for i in range(40)] + [1.0])
def test_flipped_byte(fraction, good_file, tmp_path):
    data = bytearray(good_file.read_bytes())
    position = min(int(fraction * len(data)), len(data) - 1)
    data[position] ^= 0x10
    _load_bad(bytes(data), tmp_path, match="CRC-32|truncated or corrupted")


def test_appended_bytes_are_detected(good_file, tmp_path):
    _load_bad(good_file.read_bytes() + b"\n", tmp_path)


# Archives with a valid checksum whose content is wrong: a crafted or buggy writer.
ARRAY = npy_bytes(np.arange(4.0))
CRAFTED = {
    "header_not_json": [("header.json", b"{not json")],
    "header_not_utf8": [("header.json", b"\xff\xfe")],
    "header_is_a_list": [("header.json", b"[]")],
    "wrong_format_name": [("header.json", header([], format="other"))],
    "header_version_differs": [("header.json", header([], version=2))],
    "header_version_bool": [("header.json", header([], version=True))],
    "header_extra_field": [("header.json", header([], extra=1))],
    "nan_literal": [("header.json", b'{"format":"rustoptim-state","version":1,"arrays":0,"root":NaN}')],
    "no_header": [("arrays/0.npy", ARRAY)],
    "header_not_first": [("arrays/0.npy", ARRAY), ("header.json", header({"array": 0}, arrays=1))],
    "missing_array": [("header.json", header({"array": 0}, arrays=1))],
    "extra_member": [("header.json", header(1)), ("arrays/0.npy", ARRAY)],
    "duplicate_member": [("header.json", header(1)), ("header.json", header(2))],
    "unknown_tag": [("header.json", header({"set": [1]}))],
    "two_tags": [("header.json", header({"tuple": [], "int": "0x1"}))],
    "bad_int": [("header.json", header({"int": "0xZZ"}))],
    "int_not_str": [("header.json", header({"int": 5}))],
    "short_float_bits": [("header.json", header({"float": "7ff8"}))],
    "bad_float_bits": [("header.json", header({"float": "7ff800000000000g"}))],
    "complex_of_ints": [("header.json", header({"complex": [1, 2]}))],
    "tuple_of_dict": [("header.json", header({"tuple": {"a": 1}}))],
    "dict_not_pairs": [("header.json", header({"dict": [[1, 2, 3]]}))],
    "unhashable_key": [("header.json", header({"dict": [[[1, 2], 3]]}))],
    "duplicate_key": [("header.json", header({"dict": [["a", 1], ["a", 2]]}))],
    "array_index_out_of_range": [("header.json", header({"array": 1}, arrays=1)), ("arrays/0.npy", ARRAY)],
    "array_index_not_int": [("header.json", header({"array": "0"}, arrays=1)), ("arrays/0.npy", ARRAY)],
    "scalar_object_dtype": [("header.json", header({"scalar": ["|O", "00" * 8]}))],
    "scalar_str_dtype": [("header.json", header({"scalar": ["<U1", "61000000"]}))],
    "scalar_bad_dtype": [("header.json", header({"scalar": ["not a dtype", "00"]}))],
    "scalar_wrong_length": [("header.json", header({"scalar": ["<f8", "0000"]}))],
    "npy_garbage": [("header.json", header({"array": 0}, arrays=1)), ("arrays/0.npy", b"\x93NUMPY garbage")],
    "npy_not_npy": [("header.json", header({"array": 0}, arrays=1)), ("arrays/0.npy", b"hello")],
    "npy_empty": [("header.json", header({"array": 0}, arrays=1)), ("arrays/0.npy", b"")],
    "npy_datetime": [("header.json", header({"array": 0}, arrays=1)),
                     ("arrays/0.npy", npy_bytes(np.array(["2024-01-01"], dtype="datetime64[D]")))],
    "npy_structured": [("header.json", header({"array": 0}, arrays=1)),
                       ("arrays/0.npy", npy_bytes(np.zeros(2, dtype=[("a", "f8")])))],
    "npy_shape_larger_than_data": [("header.json", header({"array": 0}, arrays=1)),
                                   ("arrays/0.npy", ARRAY.replace(b"(4,)", b"(4000000000000,)"))],
    "npy_shape_smaller_than_data": [("header.json", header({"array": 0}, arrays=1)),
                                    ("arrays/0.npy", ARRAY.replace(b"(4,)", b"(3,)"))],
    "npy_trailing_data": [("header.json", header({"array": 0}, arrays=1)), ("arrays/0.npy", ARRAY + b"\0" * 8)],
}


@pytest.mark.parametrize("members", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_archives(members, tmp_path):
    _load_bad(craft(members), tmp_path)


def test_crafted_archive_is_valid_when_untouched(tmp_path):
    path = tmp_path / "ok.rop"
    path.write_bytes(craft([("header.json", header({"tuple": [{"array": 0}, {"int": "-0x10"}]}, arrays=1)),
                            ("arrays/0.npy", ARRAY)]))
    assert_same((np.arange(4.0), -16), load(path))


def test_compressed_members_are_refused(tmp_path):
    members = [("header.json", header({"array": 0}, arrays=1)), ("arrays/0.npy", ARRAY)]
    _load_bad(craft(members, compression=zipfile.ZIP_DEFLATED), tmp_path, match="compressed")


UNPICKLED = []


def _record_unpickling():
    UNPICKLED.append(True)
    return "ran"


class _Payload:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_load_never_unpickles(tmp_path):
    payload = npy_bytes(np.array([_Payload()], dtype=object), allow_pickle=True)
    np.load(io.BytesIO(payload), allow_pickle=True)  # the payload is live: unpickling it runs code
    assert UNPICKLED == [True]
    UNPICKLED.clear()
    members = [("header.json", header({"array": 0}, arrays=1)), ("arrays/0.npy", payload)]
    _load_bad(craft(members), tmp_path, match="dtype object")
    scalar = [("header.json", header({"scalar": ["|O", payload.hex()]}))]
    _load_bad(craft(scalar), tmp_path)
    assert UNPICKLED == []


# --------------------------------------------------------------------------- hostile files
#
# Each file below was reported to make load use gigabytes, raise an undocumented
# exception, or read members the archive does not really hold. They are loaded in
# a child process (tests/load_probe.py) that measures the peak memory of each load.

BOMBS = {
    # 313 bytes; header.json is bzip2 and inflates to 64 MiB (the report used 4 GB).
    "bzip2_header": lambda: crafted_files.compressed_header_bomb(64 << 20),
    # 235 bytes declaring 2**53+1 arrays.
    "array_count_2_53": lambda: crafted_files.huge_array_count(2**53 + 1),
    "array_count_10_400": lambda: crafted_files.huge_array_count(10**400),
    # 174 kB of 300 members, each stored inside the previous one's data: 30 MB when read.
    "nested_members": lambda: crafted_files.nested_members(300, 100_000),
    # 100,000 nested JSON lists.
    "deep_json": lambda: crafted_files.archive(
        [(b"header.json", b'{"format":"rustoptim-state","version":1,"arrays":0,"root":'
          + b"[" * 100_000 + b"]" * 100_000 + b"}")]),
}


@pytest.fixture(scope="module")
def bomb_reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    paths = []
    for name, make in BOMBS.items():
        path = folder / name
        path.write_bytes(make())
        paths.append(str(path))
    return {row["case"]: row for row in run_probe("files", *paths)}


@pytest.mark.parametrize("name", BOMBS)
def test_memory_bombs_are_refused_within_the_memory_bound(name, bomb_reports):
    row = bomb_reports[name]
    assert row["outcome"] == "rustoptim.errors.FileFormatError", row
    assert "MemoryError" not in row["message"], row
    assert row["peak"] <= memory_bound(row), row


def _structure_error(members_or_data, tmp_path, match):
    data = members_or_data if isinstance(members_or_data, bytes) else crafted_files.archive(members_or_data)
    return _load_bad(data, tmp_path, match=match)


H1 = header({"array": 0}, arrays=1)


def _local(name, data, **kw):
    return crafted_files.local_header(name, data, **kw)


def _with_directory(body_members, directory_entries):
    body = b"".join(body_members)
    directory = b"".join(directory_entries)
    return crafted_files.seal(body + directory + crafted_files.end_records(len(directory_entries), len(directory),
                                                                           len(body)))


def test_compressed_header_is_refused_before_it_is_inflated(tmp_path):
    _load_bad(crafted_files.compressed_header_bomb(1 << 20), tmp_path, match="header.json.* compressed")


def test_duplicated_member_names(tmp_path):
    _structure_error([(b"header.json", H1), (b"arrays/0.npy", ARRAY), (b"arrays/0.npy", ARRAY)], tmp_path,
                     "declares 1 arrays, the archive holds 2")
    _structure_error([(b"header.json", header({"array": 1}, arrays=2)), (b"arrays/0.npy", ARRAY),
                      (b"arrays/0.npy", ARRAY)], tmp_path, "member 2 is 'arrays/0.npy', expected 'arrays/1.npy'")


def test_header_count_disagrees_with_the_archive(tmp_path):
    _structure_error([(b"header.json", header({"array": 0}, arrays=2)), (b"arrays/0.npy", ARRAY)], tmp_path,
                     "declares 2 arrays, the archive holds 1")
    _structure_error([(b"header.json", header([], arrays=1)), (b"arrays/0.npy", ARRAY)], tmp_path,
                     "arrays/0.npy is not referenced")


def test_member_sizes_that_disagree(tmp_path):
    name = b"header.json"
    # The local header says one size, the central directory another.
    local = _local(name, H1, stored_size=len(H1) + 1) + H1
    _structure_error(_with_directory([local], [crafted_files.central_entry(name, H1, 0)]), tmp_path,
                     "disagrees with the central directory")
    # Compressed and uncompressed sizes differ.
    _structure_error(_with_directory([_local(name, H1) + H1],
                                     [crafted_files.central_entry(name, H1, 0, size=len(H1) * 1000)]),
                     tmp_path, "compressed")


@pytest.mark.parametrize("size", [2**31, 2**32 - 2, 10**6])
def test_oversized_declared_member(size, tmp_path):
    name = b"header.json"
    entry = crafted_files.central_entry(name, H1, 0, compressed_size=size, size=size)
    local = _local(name, H1, stored_size=size) + H1
    _structure_error(_with_directory([local], [entry]), tmp_path, "runs into the central directory|outside the file")


def test_members_with_gaps_or_overlaps(tmp_path):
    gap = _local(b"header.json", H1) + H1 + b"\0" * 16
    entries = [crafted_files.central_entry(b"header.json", H1, 0)]
    _structure_error(_with_directory([gap], entries), tmp_path, "bytes between the last member")
    first = _local(b"header.json", H1) + H1
    _structure_error(_with_directory([first, _local(b"arrays/0.npy", ARRAY) + ARRAY],
                                     [entries[0], crafted_files.central_entry(b"arrays/0.npy", ARRAY, 5)]),
                     tmp_path, "overlapping or padded")
    _structure_error(crafted_files.nested_members(3, 10), tmp_path, "overlapping or padded")


def test_data_descriptor_and_encryption_flags_are_refused(tmp_path):
    for flag in (0x1, 0x8, 0x40):
        local = bytearray(_local(b"header.json", H1) + H1)
        local[6] = flag
        entry = bytearray(crafted_files.central_entry(b"header.json", H1, 0))
        entry[8] = flag
        _structure_error(_with_directory([bytes(local)], [bytes(entry)]), tmp_path, "encrypted")


def test_member_crc_is_checked(tmp_path):
    local = bytearray(_local(b"header.json", H1) + H1)
    entry = bytearray(crafted_files.central_entry(b"header.json", H1, 0))
    local[14] ^= 1
    entry[16] ^= 1
    _structure_error(_with_directory([bytes(local)], [bytes(entry)]), tmp_path, "header.json does not match its CRC-32")


def test_zip64_archive_loads(tmp_path):
    """What Python's zipfile writes for files over 2 GiB, in miniature: the loader's ZIP64 path."""
    members = [(b"header.json", header({"tuple": [{"array": 0}, {"array": 1}]}, arrays=2)),
               (b"arrays/0.npy", ARRAY), (b"arrays/1.npy", npy_bytes(np.eye(3, dtype=np.float32, order="F")))]
    data = crafted_files.zip64_archive(members)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the crafted archive is a valid ZIP64 archive
        assert [zf.read(name.decode()) for name, _ in members] == [content for _, content in members]
    path = tmp_path / "zip64.rop"
    path.write_bytes(data)
    assert_same((np.arange(4.0), np.eye(3, dtype=np.float32, order="F")), load(path))
    assert load(path)[1].flags.f_contiguous


def test_save_with_zip64_local_headers_loads(tmp_path, monkeypatch):
    """save marks arrays over 1 GiB ZIP64 (force_zip64); the same layout for small arrays loads too."""
    monkeypatch.setattr(serialization, "_ZIP64_FROM", 0)
    value = {"a": np.arange(5.0), "b": [np.zeros((2, 3), dtype=np.float32)]}
    path = tmp_path / "s.rop"
    save(value, path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("arrays/0.npy")
    local = path.read_bytes()[info.header_offset:]
    size32, compressed32, name_len, _ = struct.unpack_from("<2L2H", local, 18)
    tag, _, size64, compressed64 = struct.unpack_from("<2H2Q", local, 30 + name_len)
    assert (tag, size64, compressed64) == (1, info.file_size, info.compress_size)  # the ZIP64 extra
    # The 32-bit fields: saturated (the sizes are in the extra) since Python 3.11.4 and
    # 3.12, the sizes themselves before (3.9, 3.10); both load.
    assert (size32, compressed32) in [(0xFFFFFFFF, 0xFFFFFFFF), (info.file_size, info.compress_size)]
    assert_same(value, load(path))


@pytest.mark.parametrize("number", ["1" + "0" * 400, "-1" + "0" * 400, "1e400", "-1e400", "1" * 5000,
                                    str(2**63), "0." + "1" * 100])
def test_numbers_outside_what_save_writes(number, tmp_path):
    for where in ("root", "arrays", "version"):
        fields = {"format": '"rustoptim-state"', "version": "1", "arrays": "0", "root": "[]"}
        fields[where] = number
        text = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
        _load_bad(crafted_files.archive([(b"header.json", text.encode())]), tmp_path, match="has the number")


def test_numbers_save_writes_are_accepted(tmp_path):
    value = [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 1.7976931348623157e308, -5e-324, 0.1, 1e16]
    assert_same(value, round_trip(value, tmp_path))


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_nesting_limit_on_save_and_load(kind, tmp_path):
    def nest(depth):
        value = 0
        for _ in range(depth):
            value = [value] if kind == "list" else (value,) if kind == "tuple" else {"k": value}
        return value

    deepest = nest(serialization.MAX_DEPTH)
    assert_same(deepest, round_trip(deepest, tmp_path))
    with pytest.raises(StateDictError, match=r"state_dict\[.*nested 101 containers deep.*at most 100"):
        save(nest(serialization.MAX_DEPTH + 1), tmp_path / "deep.rop")
    with pytest.raises(StateDictError):
        save(nest(100_000), tmp_path / "deeper.rop")  # not a RecursionError
    assert os.listdir(tmp_path) == ["state.rop"]
    # A file holding one level more than save allows (written by hand) is refused as well.
    encoded = serialization._Encoder().encode(deepest, "v", 0)
    wrapped = [encoded] if kind == "list" else {"tuple": [encoded]} if kind == "tuple" else {"dict": [["k", encoded]]}
    _load_bad(crafted_files.archive([(b"header.json", header(wrapped))]), tmp_path, match="more than 100 levels|nested 304 levels")


def test_out_of_memory_is_memory_error_not_file_format_error(tmp_path):
    """A valid file whose arrays do not fit in memory: MemoryError naming the size (child with capped memory)."""
    path = tmp_path / "big.rop"
    save({"big": np.zeros(48 << 20, dtype=np.uint8)}, path)
    script = (
        "import resource, sys, rustoptim\n"
        "statm = open('/proc/self/statm').read().split()\n"
        "import os\n"
        "limit = int(statm[0]) * os.sysconf('SC_PAGE_SIZE') + (16 << 20)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    rustoptim.load(sys.argv[1])\n"
        "except BaseException as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc and RLIMIT_AS")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("MemoryError cannot allocate 50331648 bytes for arrays/0.npy"), out
