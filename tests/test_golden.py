"""rustoptim against trajectories recorded from torch.optim (tests/golden and
tests/golden/ext, see their READMEs).

Every first-order case of every optimizer in the table (tests/optimizer_table.py)
whose golden files are present runs with its params in C order, Fortran order
and as strided views into larger buffers; every step's params, the final state
and the state dict's param_groups are compared with torch's, at the tolerances
of the recording's README. Optimizers whose table row sets
``golden_update_rtol`` (Muon, which torch orthogonalizes in bfloat16) are
compared by each step's update instead of element-wise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rustoptim
from optimizer_table import BY_NAME

GOLDEN = Path(__file__).parent / "golden"
# (folder, float64 relative tolerance, float32 relative tolerance): each recording's README.
RECORDINGS = [(GOLDEN, 1e-13, 1e-4), (GOLDEN / "ext", 1e-10, 3e-4)]
CLASSES = {name: info.cls for name, info in BY_NAME.items()}
CASES = [
    {**case, "folder": str(folder), "rtol64": rtol64, "rtol32": rtol32}
    for folder, rtol64, rtol32 in RECORDINGS
    for case in json.loads((folder / "manifest.json").read_text())["cases"]
    if case.get("kind") is None and case["optimizer"] in CLASSES and (folder / case["file"]).exists()
]


def load_case(case: dict):
    return np.load(Path(case["folder"]) / case["file"])


def assert_matches(actual: np.ndarray, expected: np.ndarray, case: dict, what: str) -> None:
    """The README's tolerances; SGD exactly (it has no sqrt, and rustoptim uses
    torch's fused multiply-adds, so it reproduces torch bitwise). float32 errors
    are relative with the denominator floored at 1e-3 of the largest magnitude."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    if case["optimizer"] == "SGD":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    elif expected.size == 0:
        return
    elif not np.any(expected):  # all zeros (Rprop's prev after a sign flip): no scale to be relative to
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    elif expected.dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=case["rtol64"], atol=0, err_msg=what)
    else:
        floor = 1e-3 * np.abs(expected).max()
        error = np.abs(actual.astype(np.float64) - expected) / np.maximum(np.abs(expected), floor)
        assert error.max() < case["rtol32"], f"{what}: relative error {error.max():.3g}"


def build(case: dict, arrays: list) -> tuple:
    params = [rustoptim.Parameter(a) for a in arrays]
    groups = [{**group, "params": [params[i] for i in group["params"]]} for group in case["groups"]]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in case["defaults"].items()}
    return params, CLASSES[case["optimizer"]](groups, **kwargs)


def expected_param_groups(case: dict) -> list:
    # The golden was recorded with foreach=False (torch's single-tensor path).
    # rustoptim has one code path; its default foreach=None is kept as given,
    # so 'foreach' is compared as None and every other key, value and the key
    # order exactly.
    groups = []
    for group in case["state_dict_param_groups"]:
        group = {k: (None if k == "foreach" else v) for k, v in group.items()}
        group = {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        groups.append(group)
    return groups


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_trajectory_matches_torch(case, layout, place, untouched):
    data = load_case(case)
    n = len(case["shapes"])
    placed = [place(data[f"p{i}_init"], layout) for i in range(n)]
    views = [view for view, _ in placed]
    params, optimizer = build(case, views)

    update_rtol = BY_NAME[case["optimizer"]].golden_update_rtol
    for t in range(case["steps"]):
        change = case["lr_changes"].get(str(t))
        if change is not None:
            optimizer.param_groups[change["group"]]["lr"] = change["lr"]
        for i, p in enumerate(params):
            p.grad = data[f"g{t}_{i}"] if f"g{t}_{i}" in data.files else None
        before = [view.astype(np.float64) for view in views]
        assert optimizer.step() is None
        for i, (view, buffer) in enumerate(placed):
            assert params[i].data is view
            expected = data[f"p{i}_after{t}"]
            if update_rtol is None:
                assert_matches(view, expected, case, f"param {i} after step {t}")
            else:
                # Each step's update (ours from our params, torch's from its own).
                previous = data[f"p{i}_after{t - 1}"] if t else data[f"p{i}_init"]
                ours, theirs = view - before[i], expected.astype(np.float64) - previous
                error = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
                assert error < update_rtol, f"update of param {i} at step {t}: relative error {error:.3g}"
            untouched(buffer, view)

    state_dict = optimizer.state_dict()
    expected_indices = sorted({int(k.split("_")[0][5:]) for k in data.files if k.startswith("state")})
    if case["state_keys"]:
        assert sorted(state_dict["state"]) == expected_indices
    else:
        assert state_dict["state"] == {}
    for index, entry in state_dict["state"].items():
        # Keys can differ between groups (RMSprop's grad_avg only where centered).
        recorded = sorted(k.split("_", 1)[1] for k in data.files if k.startswith(f"state{index}_"))
        assert sorted(entry) == recorded and set(recorded) <= set(case["state_keys"])
        for key, value in entry.items():
            if not isinstance(value, np.ndarray):
                assert type(value) is float and value == float(data[f"state{index}_{key}"]), key
            else:
                assert_matches(value, data[f"state{index}_{key}"], case, f"state {index} {key}")
    assert state_dict["param_groups"] == expected_param_groups(case)
    for ours, theirs in zip(state_dict["param_groups"], expected_param_groups(case)):
        assert list(ours) == list(theirs)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_state_key_order_is_torchs(case):
    data = load_case(case)
    params, optimizer = build(case, [data[f"p{i}_init"].copy() for i in range(len(case["shapes"]))])
    for p in params:
        p.grad = np.ones_like(p.data)
    optimizer.step()
    order = BY_NAME[case["optimizer"]].state_keys
    for entry in optimizer.state.values():
        assert set(entry) <= set(case["state_keys"])
        assert list(entry) == [k for k in order if k in entry]
