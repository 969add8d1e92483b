"""coloi as a library: ``coloi.colourise`` and ``coloi.Colouriser`` on the shipped models, for
every kind of input, giving back the kind it was given; ``read_photo``/``write_photo``."""

from __future__ import annotations

import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import coloi
from coloi.color import bgr_to_lab
from tests.conftest import SAMPLES, natural_photo


@pytest.fixture(scope="module")
def colouriser() -> coloi.Colouriser:
    return coloi.Colouriser("tflite")


def chroma_of_rgb(rgb: np.ndarray) -> float:
    return float(np.linalg.norm(bgr_to_lab(rgb[:, :, ::-1].copy())[:, :, 1:], axis=2).mean())


def test_the_issue_example_a_grey_array_gives_an_rgb_array() -> None:
    out = coloi.colourise(np.zeros((64, 64), np.uint8))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_a_real_grey_photo_as_an_array(colouriser: coloi.Colouriser) -> None:
    grey = cv2.imread(str(SAMPLES / "camera.png"), cv2.IMREAD_GRAYSCALE)
    out = colouriser.colourise(grey)
    assert out.shape == (*grey.shape, 3) and out.dtype == np.uint8
    assert chroma_of_rgb(out) > 3.0


def test_arrays_are_rgb_not_bgr(colouriser: coloi.Colouriser) -> None:
    # Pure red: luma 76 read as RGB, 29 if it were taken for BGR.
    red = np.zeros((32, 32, 3), np.uint8)
    red[:, :, 0] = 255
    as_grey = colouriser.colourise(np.full((32, 32), 76, np.uint8))
    assert np.array_equal(colouriser.colourise(red), as_grey)


def test_sixteen_bit_and_alpha_arrays(colouriser: coloi.Colouriser) -> None:
    grey16 = (np.tile(np.linspace(0, 65535, 80), (60, 1))).astype(np.uint16)
    out16 = colouriser.colourise(grey16)
    assert out16.shape == (60, 80, 3) and out16.dtype == np.uint16
    rgba = np.dstack(
        [np.full((60, 80, 3), 120, np.uint8), np.arange(80, dtype=np.uint8)[None, :].repeat(60, 0)]
    )
    out = colouriser.colourise(rgba)
    assert out.shape == (60, 80, 4) and np.array_equal(out[:, :, 3], rgba[:, :, 3])


def test_wrong_arrays_are_refused(colouriser: coloi.Colouriser) -> None:
    with pytest.raises(TypeError, match="uint8 or uint16"):
        colouriser.colourise(np.zeros((8, 8), np.float32))
    with pytest.raises(TypeError, match="shape"):
        colouriser.colourise(np.zeros((8, 8, 2), np.uint8))


def test_a_path_and_bytes_give_encoded_bytes_in_the_same_format(
    colouriser: coloi.Colouriser, tmp_path: Path
) -> None:
    path = SAMPLES / "chelsea.jpg"
    from_path = colouriser.colourise(path)
    from_str = colouriser.colourise(str(path))
    from_bytes = colouriser.colourise(path.read_bytes())
    assert isinstance(from_path, bytes) and from_path == from_str == from_bytes
    image = Image.open(io.BytesIO(from_path))
    assert image.format == "JPEG" and image.size == Image.open(path).size
    png = colouriser.colourise(SAMPLES / "camera.png")
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_the_cli_writes_what_the_library_returns(
    cli, colouriser: coloi.Colouriser, tmp_path: Path
) -> None:
    assert cli("run", "-b", "tflite", SAMPLES / "chelsea.jpg", "-o", tmp_path).exit_code == 0
    assert (tmp_path / "chelsea.jpg").read_bytes() == colouriser.colourise(SAMPLES / "chelsea.jpg")


def test_a_pil_image_gives_a_pil_image(colouriser: coloi.Colouriser) -> None:
    grey = Image.open(SAMPLES / "camera.png").convert("L")
    out = colouriser.colourise(grey)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == grey.size
    assert np.array_equal(np.asarray(out), colouriser.colourise(np.asarray(grey)))
    sixteen = Image.fromarray(np.full((20, 30), 30000, np.uint16))
    assert colouriser.colourise(sixteen).size == (30, 20)
    with_alpha = colouriser.colourise(Image.new("LA", (30, 20), (128, 40)))
    assert with_alpha.mode == "RGBA" and with_alpha.getpixel((0, 0))[3] == 40


def test_bad_bytes_name_the_reason(colouriser: coloi.Colouriser) -> None:
    with pytest.raises(coloi.UnreadablePhoto, match="not an image"):
        colouriser.colourise(b"a shopping list, not a photo")
    with pytest.raises(coloi.UnreadablePhoto, match="no such file"):
        colouriser.colourise(Path("nowhere.jpg"))
    with pytest.raises(TypeError):
        colouriser.colourise(42)  # type: ignore[call-overload]


def test_read_and_write_photo_keep_orientation_and_exif(
    colouriser: coloi.Colouriser, tmp_path: Path
) -> None:
    source = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    exif[0x010F] = "Kodak"
    Image.fromarray(natural_photo(60, 90)).save(source, exif=exif.tobytes())
    photo = coloi.read_photo(source)
    assert photo.pixels.shape[:2] == (90, 60)  # upright
    assert photo.rgb.shape == photo.pixels.shape
    out = colouriser.colourise(photo)
    assert isinstance(out, coloi.Photo) and out.pixels.shape == (90, 60, 3)
    target = coloi.write_photo(out, tmp_path / "out.png")
    written = Image.open(target)
    assert written.size == (60, 90) and written.getexif()[0x010F] == "Kodak"
    with pytest.raises(coloi.OutputExists):
        coloi.write_photo(out, target)
    assert coloi.read_photo(source.read_bytes()).pixels.shape == photo.pixels.shape


def test_one_colouriser_is_shared_by_threads(colouriser: coloi.Colouriser) -> None:
    photos = [
        cv2.cvtColor(natural_photo(64, 64 + 8 * i, seed=i), cv2.COLOR_BGR2GRAY) for i in range(8)
    ]
    alone = [colouriser.colourise(p) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(colouriser.colourise, photos))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))


def test_a_closed_colouriser_refuses_work() -> None:
    with coloi.Colouriser("tflite", post=["saturation:amount=1.2"]) as colouriser:
        assert colouriser.backend.name == "tflite"
        colouriser.colourise(np.zeros((8, 8), np.uint8))
    with pytest.raises(coloi.ColoiError, match="closed"):
        colouriser.colourise(np.zeros((8, 8), np.uint8))


def test_bad_settings_fail_when_built() -> None:
    with pytest.raises(coloi.ColoiError, match="unknown backend 'nope'"):
        coloi.Colouriser("nope")
    with pytest.raises(coloi.ColoiError, match="unknown preprocess step"):
        coloi.Colouriser("tflite", pre=["nope"])


def test_import_coloi_loads_nothing_heavy() -> None:
    code = (
        "import sys, coloi; coloi.hookimpl; "
        "print([m for m in ('numpy', 'cv2', 'PIL', 'tensorflow') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    assert {"colourise", "Colouriser", "read_photo", "write_photo"} <= set(dir(coloi))


def test_the_package_is_typed() -> None:
    assert (Path(coloi.__file__).parent / "py.typed").exists()


def test_the_library_guide_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every python block of docs/api.md, in order, in a folder holding the files they name."""
    import re

    from tests.conftest import REPO

    (tmp_path / "scans").mkdir()
    (tmp_path / "out").mkdir()
    cv2.imwrite(str(tmp_path / "scans" / "a.jpg"), natural_photo())
    cv2.imwrite(str(tmp_path / "old.tif"), natural_photo(seed=1))
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "out" / "a.jpg").exists() and (tmp_path / "old-colour.tif").exists()


def test_with_steps_shares_the_loaded_backend(colouriser: coloi.Colouriser) -> None:
    grey = cv2.cvtColor(natural_photo(64, 80), cv2.COLOR_BGR2GRAY)
    grey_again = colouriser.with_steps(post=["saturation:amount=0"])
    assert grey_again.backend is colouriser.backend  # nothing loaded again
    out = grey_again.colourise(grey)
    assert int(np.ptp(out.astype(int), axis=2).max()) <= 2  # grey: the channels agree
    assert chroma_of_rgb(colouriser.colourise(grey)) > 2  # the original keeps its steps
    with pytest.raises(coloi.ColoiError, match="nosuch"):
        colouriser.with_steps(pre=["nosuch"])


def test_encode_photo_and_named_bytes() -> None:
    data = (SAMPLES / "chelsea.jpg").read_bytes()
    photo = coloi.read_photo(data, name="holiday.jpg")
    assert coloi.encode_photo(photo).startswith(b"\xff\xd8")  # its own format: JPEG
    assert coloi.encode_photo(photo, "png").startswith(b"\x89PNG")
    with pytest.raises(coloi.UnreadablePhoto, match=r"^holiday\.jpg: truncated JPEG"):
        coloi.read_photo(data[:-500], name="holiday.jpg")
    from coloi.errors import NotAPhoto

    with pytest.raises(NotAPhoto, match="not an image"):
        coloi.read_photo(b"eggs, milk, flour\n" * 20)
