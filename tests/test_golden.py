"""rustoptim against trajectories recorded from torch.optim (tests/golden, see its README).

Every first-order case runs with its params in C order, Fortran order and as
strided views into larger buffers; every step's params, the final state and
the state dict's param_groups are compared with torch's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rustoptim

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
CLASSES = {"Adam": rustoptim.Adam, "AdamW": rustoptim.AdamW, "SGD": rustoptim.SGD}
CASES = [case for case in MANIFEST["cases"] if case["optimizer"] in CLASSES]


def assert_matches(actual: np.ndarray, expected: np.ndarray, case: dict, what: str) -> None:
    """The README's tolerances; SGD exactly (it has no sqrt, and rustoptim uses
    torch's fused multiply-adds, so it reproduces torch bitwise)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    if case["optimizer"] == "SGD":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    elif expected.size == 0:
        return
    elif expected.dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=0, err_msg=what)
    else:
        floor = 1e-3 * np.abs(expected).max()
        error = np.abs(actual.astype(np.float64) - expected) / np.maximum(np.abs(expected), floor)
        assert error.max() < 1e-4, f"{what}: relative error {error.max():.3g}"


def build(case: dict, arrays: list) -> tuple:
    params = [rustoptim.Parameter(a) for a in arrays]
    groups = [{**group, "params": [params[i] for i in group["params"]]} for group in case["groups"]]
    kwargs = dict(case["defaults"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return params, CLASSES[case["optimizer"]](groups, **kwargs)


def expected_param_groups(case: dict) -> list:
    # The golden was recorded with foreach=False (torch's single-tensor path).
    # rustoptim has one code path; its default foreach=None is kept as given,
    # so 'foreach' is compared as None and every other key, value and the key
    # order exactly.
    groups = []
    for group in case["state_dict_param_groups"]:
        group = {k: (None if k == "foreach" else v) for k, v in group.items()}
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return groups


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_trajectory_matches_torch(case, layout, place, untouched):
    data = np.load(GOLDEN / case["file"])
    n = len(case["shapes"])
    placed = [place(data[f"p{i}_init"], layout) for i in range(n)]
    views = [view for view, _ in placed]
    params, optimizer = build(case, views)

    for t in range(case["steps"]):
        change = case["lr_changes"].get(str(t))
        if change is not None:
            optimizer.param_groups[change["group"]]["lr"] = change["lr"]
        for i, p in enumerate(params):
            p.grad = data[f"g{t}_{i}"] if f"g{t}_{i}" in data.files else None
        assert optimizer.step() is None
        for i, (view, buffer) in enumerate(placed):
            assert params[i].data is view
            assert_matches(view, data[f"p{i}_after{t}"], case, f"param {i} after step {t}")
            untouched(buffer, view)

    state_dict = optimizer.state_dict()
    expected_indices = sorted({int(k.split("_")[0][5:]) for k in data.files if k.startswith("state")})
    if case["state_keys"]:
        assert sorted(state_dict["state"]) == expected_indices
    else:
        assert state_dict["state"] == {}
    for index, entry in state_dict["state"].items():
        assert sorted(entry) == sorted(case["state_keys"])
        for key, value in entry.items():
            if key == "step":
                assert type(value) is float and value == float(data[f"state{index}_step"])
            else:
                assert_matches(value, data[f"state{index}_{key}"], case, f"state {index} {key}")
    assert state_dict["param_groups"] == expected_param_groups(case)
    for ours, theirs in zip(state_dict["param_groups"], expected_param_groups(case)):
        assert list(ours) == list(theirs)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_state_key_order_is_torchs(case):
    data = np.load(GOLDEN / case["file"])
    params, optimizer = build(case, [data[f"p{i}_init"].copy() for i in range(len(case["shapes"]))])
    for p in params:
        p.grad = np.ones_like(p.data)
    optimizer.step()
    order = {
        "Adam": ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        "AdamW": ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        "SGD": ["momentum_buffer"],
    }[case["optimizer"]]
    for entry in optimizer.state.values():
        assert list(entry) == [k for k in order if k in case["state_keys"]]
