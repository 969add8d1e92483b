"""Model outputs against stored expectations, with a tolerance (not exact bytes): both backends
on the shipped models must still colour the sample photos as when the expectations were made."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coloi.backend import BackendSettings
from coloi.pipeline import Colouriser
from coloi.plugin_host import get_registry
from tests.conftest import REPO, needs_tf
from tests.golden.regenerate import PHOTOS, colour_models, predicted_ab

EXPECTED = json.loads((REPO / "tests" / "golden" / "expected_ab.json").read_text())


def test_expectations_belong_to_the_shipped_models() -> None:
    assert EXPECTED["models"] == colour_models(), (
        "run tests/golden/regenerate.py after a model change"
    )


# int8 quantisation moves a*b* a little; the float model must match almost exactly.
@pytest.mark.parametrize(
    ("backend", "tolerance"), [pytest.param("tf-gpu", 0.5, marks=needs_tf), ("tflite", 3.0)]
)
def test_sample_photos_match_expectations(backend: str, tolerance: float) -> None:
    colouriser = Colouriser(get_registry().backend(backend)(BackendSettings()))
    for name in PHOTOS:
        got = predicted_ab(colouriser, name)
        want = np.asarray(EXPECTED["ab"][name], dtype=np.float32)
        assert np.abs(got - want).mean() < tolerance, name
        assert np.abs(want).mean() > 1.0  # the expectation itself has colour
