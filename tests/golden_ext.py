"""The torch 2.15 recordings in tests/golden/ext (schema in its README.md).

``manifest.json`` lists every case; a case's ``kind`` says what it records
(``"schedule"``, ``"clip_grad_norm"``, ``"ema"``, ...; optimizer cases have no
``kind``). Only the files of the kinds a test uses need to be present.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EXT = Path(__file__).parent / "golden" / "ext"
MANIFEST = json.loads((EXT / "manifest.json").read_text())


def cases(kind: str | None) -> list[dict]:
    """The manifest's cases of this ``kind`` (None: the optimizer cases)."""
    return [case for case in MANIFEST["cases"] if case.get("kind") == kind]


def arrays(case: dict) -> dict[str, np.ndarray]:
    """The arrays of ``case`` (its ``.npz`` file), loaded without pickle."""
    with np.load(EXT / case["file"], allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
