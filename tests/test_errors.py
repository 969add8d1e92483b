"""Bad inputs and outputs through the real CLI: a one-line error naming the file and the reason,
no traceback, the other photos still done, a non-zero exit, nothing partial left, inputs intact."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import pytest
from PIL import Image

from tests.conftest import natural_photo


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(natural_photo(64, 80)).save(buffer, format=fmt)
    return buffer.getvalue()


BAD_INPUTS = {
    "empty.jpg": (b"", "empty file"),
    "text.jpg": (b"this is a shopping list, not a photo\n" * 20, "not an image"),
    "cut.jpg": (_encoded("JPEG")[:-400], "truncated JPEG"),
    "cut.png": (_encoded("PNG")[:-300], "truncated PNG"),
    "cut.tif": (_encoded("TIFF")[:-3000], "truncated TIFF"),
    "cut.webp": (_encoded("WEBP")[:-200], "truncated WEBP"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gets_one_line_and_others_are_done(cli, tmp_path: Path, name: str) -> None:
    data, reason = BAD_INPUTS[name]
    bad = tmp_path / "in" / name
    bad.parent.mkdir()
    bad.write_bytes(data)
    good = tmp_path / "in" / "good.png"
    cv2.imwrite(str(good), natural_photo())
    result = cli("run", "-b", "tflite", tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if name in line]
    assert len(errors) == 1 and reason in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["good.png"]
    assert bad.read_bytes() == data


def test_missing_file(cli, tmp_path: Path) -> None:
    result = cli("run", "-b", "tflite", tmp_path / "nowhere.jpg")
    assert result.exit_code == 1
    assert "nowhere.jpg: no such file or folder" in result.stderr


def test_unwritable_output_folder(cli, tmp_path: Path) -> None:
    source = tmp_path / "p.png"
    cv2.imwrite(str(source), natural_photo())
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    result = cli("run", "-b", "tflite", source, "-o", blocker / "sub")
    assert result.exit_code == 1
    assert "cannot create folder" in result.stderr and "file-not-folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_backend_and_bad_step(cli, sample_photo: Path) -> None:
    result = cli("run", "-b", "no-such-backend", sample_photo)
    assert result.exit_code == 1 and "unknown backend 'no-such-backend'" in result.stderr
    result = cli("run", "-b", "tflite", "--pre", "no-such-step", sample_photo)
    assert result.exit_code == 1 and "unknown preprocess step 'no-such-step'" in result.stderr


def test_tampered_model_is_refused(cli, tmp_path: Path, sample_photo: Path) -> None:
    from tests.conftest import MODELS

    copy = tmp_path / "models"
    copy.mkdir()
    for path in MODELS.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    # The colour model (repair.tflite, the repair step's detector, is not the backend's).
    tflite = next(p for p in copy.glob("*.tflite") if p.name != "repair.tflite")
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0x01
    tflite.write_bytes(bytes(data))
    result = cli("run", "-b", "tflite", "--model-dir", copy, sample_photo)
    assert result.exit_code == 1
    assert "does not match the manifest" in result.stderr and tflite.name in result.stderr
    result = cli("run", "-b", "tflite", sample_photo, env={"COLOI_MODEL_DIR": str(copy)})
    assert result.exit_code == 1 and "does not match the manifest" in result.stderr
    assert not sample_photo.with_name("chelsea_colourised.jpg").exists()


def test_export_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    from tests.conftest import run_coloi

    (tmp_path / "empty").mkdir()
    result = run_coloi(
        "export", tmp_path / "empty", tmp_path / "out", "--calibration", "x", "--check", "y"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"coloi: error: {tmp_path / 'empty'}: not a training run (it has no run.json)"
    ]


def test_train_on_a_folder_without_photos(tmp_path: Path) -> None:
    from tests.conftest import run_coloi

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    result = run_coloi("train", tmp_path / "empty", tmp_path / "runs" / "x")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "empty: no photos in this folder" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_eval_json_is_strict_json(cli, tmp_path: Path) -> None:
    """A grey truth makes the grey baseline perfect (once an infinite PSNR, printed as
    Infinity); whatever a measure gives, the output stays JSON: no Infinity, no NaN."""
    import json
    import math

    from coloi.cli import _finite

    grey = cv2.cvtColor(natural_photo(64, 80), cv2.COLOR_BGR2GRAY)
    (tmp_path / "truth").mkdir()
    cv2.imwrite(str(tmp_path / "truth" / "grey.png"), grey)
    result = cli("eval", tmp_path / "truth", "-b", "tflite", "--json")
    assert result.exit_code == 0, result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["photos"] == 1
    assert _finite({"psnr": math.inf, "rows": [math.nan, 1.5]}) == {
        "psnr": None,
        "rows": [None, 1.5],
    }


def test_under_systemd_lines_carry_their_syslog_priority(tmp_path: Path) -> None:
    """journalctl -p err finds failures: with JOURNAL_STREAM set, an error line starts <3>,
    and the summary (information) <6>; without it, lines are plain."""
    from tests.conftest import run_coloi

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.jpg").write_bytes(b"not a photo")
    cv2.imwrite(str(tmp_path / "in" / "good.png"), natural_photo())
    journal = run_coloi(
        "run",
        "-b",
        "tflite",
        tmp_path / "in",
        "-o",
        tmp_path / "a",
        env={"JOURNAL_STREAM": "8:12345"},
    )
    assert journal.returncode == 1
    lines = journal.stderr.strip().splitlines()
    assert any(line.startswith("<3>coloi: ") and "bad.jpg" in line for line in lines), lines
    assert any(line.startswith("<6>coloi: 1 colourised, 1 failed") for line in lines), lines
    assert journal.stdout.strip() == str(tmp_path / "a" / "good.png")
    plain = run_coloi(
        "run", "-b", "tflite", tmp_path / "in", "-o", tmp_path / "b", env={"JOURNAL_STREAM": ""}
    )
    assert all(line.startswith("coloi: ") for line in plain.stderr.strip().splitlines())
    missing = run_coloi("run", "-b", "nope", tmp_path / "in", env={"JOURNAL_STREAM": "8:1"})
    assert missing.stderr.strip().splitlines() == [
        "<3>coloi: error: unknown backend 'nope' (installed: tf-gpu, tflite)"
    ], missing.stderr
