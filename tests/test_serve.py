"""``coloi serve``: the real command in a subprocess on loopback ports, driven over HTTP, and
its page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

Two servers run for the whole module: an open one with the defaults, and a guarded one (a
token from COLOI_TOKEN, one worker and no waiting line, small limits, one CORS origin).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SAMPLES, natural_photo, run_coloi

pytest.importorskip("starlette", reason="needs the serve extra (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="needs the serve extra (pip install -e '.[serve]')")

TOKEN = "family-photos-" + uuid.uuid4().hex
ORIGIN = "http://photos.test"
GUARDED_MAX_BYTES = 300_000
GUARDED_MAX_PIXELS = 2_000_000
ARTIFACTS = REPO / "test-artifacts"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    tmp: Path
    notify: socket.socket | None = None  # systemd's notification socket, played by the test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        data = self.json()
        assert isinstance(data, dict) and set(data) == {"error"}, data
        return str(data["error"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _coloi() -> str:
    return shutil.which("coloi", path=str(Path(sys.executable).parent)) or "coloi"


def _start(folder: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "server.log"
    tmp = folder / "tmp"
    tmp.mkdir()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(folder / "notify"))
    full_env = {
        **os.environ,
        "COLOI_CONFIG": str(folder / "none.toml"),
        "TMPDIR": str(tmp),
        "NOTIFY_SOCKET": str(folder / "notify"),
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_coloi(), "serve", "--backend", "tflite", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    return Server(process, port, log, tmp, notify)


def _wait_ready(server: Server, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log.read_text()
        try:
            if request(server, "GET", "/v1/health", headers=headers).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not start: " + server.log.read_text())


def _stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
    assert code == 0, server.log.read_text()  # SIGTERM is a clean stop
    if server.notify is not None:
        server.notify.close()
    assert list(server.tmp.iterdir()) == []  # no upload ever left a file behind


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    base = tmp_path_factory.mktemp("serve")
    # Both load their model at once: the start-up is paid once.
    open_server = _start(base / "open", "--workers", "2")
    guarded = _start(
        base / "guarded",
        "--workers",
        "1",
        "--queue",
        "0",
        "--max-bytes",
        str(GUARDED_MAX_BYTES),
        "--max-pixels",
        str(GUARDED_MAX_PIXELS),
        "--cors-origin",
        ORIGIN,
        env={"COLOI_TOKEN": TOKEN},
    )
    try:
        _wait_ready(open_server)
        _wait_ready(guarded, {"Authorization": f"Bearer {TOKEN}"})
        yield open_server, guarded
    finally:
        for server in (open_server, guarded):
            if server.process.poll() is None:
                _stop(server)


@pytest.fixture(scope="module")
def server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture(scope="module")
def guarded(servers: tuple[Server, Server]) -> Server:
    return servers[1]


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _lower(headers: Any) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    call = urllib.request.Request(
        server.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return Answer(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, _lower(error.headers), error.read())


def post_photo(
    server: Server,
    data: bytes,
    query: str = "",
    content_type: str = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> Answer:
    return request(
        server,
        "POST",
        "/v1/colourise" + query,
        data,
        {"Content-Type": content_type, **(headers or {})},
    )


def multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, (filename, data) in fields.items():
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def decoded(data: bytes) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels is not None
    return pixels


def chroma(pixels: np.ndarray) -> float:
    """Mean spread between the colour channels: 0 for grey."""
    bgr = pixels[..., :3].astype(np.float32)
    return float((bgr.max(axis=2) - bgr.min(axis=2)).mean())


def encoded(fmt: str, pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


GREY_JPEG = encoded("JPEG", cv2.cvtColor(natural_photo(120, 160), cv2.COLOR_BGR2GRAY))


# ---- the API ----


def test_health_says_backend_model_and_queue(server: Server) -> None:
    health = request(server, "GET", "/v1/health")
    assert health.status == 200
    info = health.json()
    assert isinstance(info, dict)
    assert info["backend"] == "tflite" and info["model"]
    assert info["workers"] == 2 and info["queue"] == 0 and info["capacity"] == 10


def test_tells_systemd_it_is_ready(server: Server) -> None:
    assert server.notify is not None
    server.notify.settimeout(5)
    message = server.notify.recv(4096).decode()
    assert "READY=1" in message.splitlines()
    assert f"serving on http://127.0.0.1:{server.port}/" in message


def test_plugins_is_coloi_plugins_json(server: Server) -> None:
    listed = request(server, "GET", "/v1/plugins")
    assert listed.status == 200
    assert listed.json() == json.loads(run_coloi("plugins", "--json").stdout)
    with_options = request(server, "GET", "/v1/plugins?options=true").json()
    assert isinstance(with_options, list)
    assert all("options" in row for row in with_options)


def test_openapi_describes_every_route(server: Server) -> None:
    document = request(server, "GET", "/openapi.json").json()
    assert isinstance(document, dict) and document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/v1/colourise", "/v1/health", "/v1/plugins"}
    for path, operations in document["paths"].items():
        for method in operations:
            assert request(server, method.upper(), path).status != 404, path
    responses = document["paths"]["/v1/colourise"]["post"]["responses"]
    assert {"200", "400", "413", "415", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]


def test_raw_body_and_multipart_give_what_the_library_gives(server: Server) -> None:
    import coloi

    photo = (SAMPLES / "chelsea.jpg").read_bytes()
    raw = post_photo(server, photo)
    body, content_type = multipart({"file": ("chelsea.jpg", photo)})
    form = post_photo(server, body, content_type=content_type)
    for answer in (raw, form):
        assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"
    assert 'filename="chelsea_colourised.jpg"' in form.headers["content-disposition"]
    with coloi.Colouriser("tflite") as colouriser:
        library = decoded(colouriser.colourise(photo))
    for answer in (raw, form):
        ours = decoded(answer.body)
        assert ours.shape == library.shape
        assert np.abs(ours.astype(int) - library.astype(int)).mean() < 1.0
        assert chroma(ours) > 5


def test_16_bit_png_stays_16_bit(server: Server) -> None:
    y, x = np.mgrid[0:90, 0:120]
    grey16 = ((x * 500 + y * 60) % 65536).astype(np.uint16)
    ok, png = cv2.imencode(".png", grey16)
    assert ok
    for query, fmt in (("", "png"), ("?format=tiff", "tiff")):
        answer = post_photo(server, png.tobytes(), query, "image/png")
        assert answer.status == 200 and answer.headers["content-type"] == f"image/{fmt}"
        out = decoded(answer.body)
        assert out.dtype == np.uint16 and out.shape == (90, 120, 3)


def test_jpeg_exif_is_carried_over_and_orientation_applied(server: Server) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    exif[0x010F] = "coloi test camera"
    grey = cv2.cvtColor(natural_photo(60, 80), cv2.COLOR_BGR2GRAY)
    answer = post_photo(server, encoded("JPEG", grey, exif=exif.tobytes()))
    assert answer.status == 200
    out = Image.open(io.BytesIO(answer.body))
    assert out.size == (60, 80)  # upright: portrait
    assert out.getexif()[0x010F] == "coloi test camera"
    assert out.getexif().get(0x0112, 1) == 1


def test_format_and_quality(server: Server) -> None:
    webp = post_photo(server, GREY_JPEG, "?format=webp")
    assert webp.status == 200 and webp.headers["content-type"] == "image/webp"
    assert webp.body[8:12] == b"WEBP"
    small = post_photo(server, GREY_JPEG, "?quality=10")
    large = post_photo(server, GREY_JPEG, "?quality=95")
    assert len(small.body) < len(large.body)
    for query, words in (
        ("?format=gif", "unknown format"),
        ("?quality=0", "quality"),
        ("?quality=high", "quality"),
        ("?vividness=nan", "vividness"),
        ("?qualty=90", "unknown query option 'qualty'"),
    ):
        answer = post_photo(server, GREY_JPEG, query)
        assert answer.status == 400 and words in answer.error, query


def test_steps_and_vividness(server: Server) -> None:
    default = chroma(decoded(post_photo(server, GREY_JPEG).body))
    grey = decoded(post_photo(server, GREY_JPEG, "?vividness=0").body)
    vivid = chroma(decoded(post_photo(server, GREY_JPEG, "?vividness=2").body))
    assert chroma(grey) < 1.5 < default
    assert vivid > 1.5 * default
    side = decoded(post_photo(server, GREY_JPEG, "?post=compare:layout=side").body)
    assert side.shape[:2] == (120, 320)
    assert post_photo(server, GREY_JPEG, "?pre=autolevels&pre=denoise").status == 200
    bad = post_photo(server, GREY_JPEG, "?post=saturation:amount=99")
    assert bad.status == 400 and "amount" in bad.error
    assert post_photo(server, GREY_JPEG, "?pre=nosuch").status == 400


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` x ``height`` pixels: an image bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


BAD_UPLOADS = {
    "not an image": (b"eggs, milk, flour\n" * 50, "image/png", 415, "not an image"),
    "not an image type": (b"eggs, milk, flour\n", "text/plain", 415, "Content-Type image"),
    "truncated JPEG": (GREY_JPEG[:-500], "image/jpeg", 400, "truncated JPEG"),
    "empty": (b"", "image/jpeg", 400, "empty"),
    "image bomb": (_png_header(100_000, 100_000), "image/png", 413, "over the limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_gets_its_status_and_the_server_keeps_serving(server: Server, case: str) -> None:
    data, content_type, status, words = BAD_UPLOADS[case]
    answer = post_photo(server, data, content_type=content_type)
    assert answer.status == status and answer.headers["content-type"] == "application/json"
    assert words in answer.error
    body, form_type = multipart({"file": ("holiday.jpg", data)})
    if content_type != "text/plain":  # the same through a form, named by its file name
        answer = post_photo(server, body, content_type=form_type)
        assert answer.status == status and answer.error.startswith("holiday.jpg: ")
    assert post_photo(server, GREY_JPEG).status == 200
    assert request(server, "GET", "/v1/health").status == 200


def test_an_early_answer_reaches_a_client_still_sending(server: Server) -> None:
    # Refused before its body is read, a body larger than the socket buffers must still be
    # read to its end by the server: closing with it unread resets the connection, and the
    # client (which sends all of it before reading) never sees the answer.
    for _ in range(2):
        answer = post_photo(server, os.urandom(20 << 20), content_type="text/plain")
        assert answer.status == 415 and "Content-Type" in answer.error


def test_malformed_requests_get_json_errors(server: Server) -> None:
    body, content_type = multipart({"photo": ("a.jpg", GREY_JPEG)})
    answer = post_photo(server, body, content_type=content_type)
    assert answer.status == 400 and "no field 'file'" in answer.error
    body, content_type = multipart({"file": ("a.jpg", GREY_JPEG)})
    answer = post_photo(server, body[:-30] + b"garbage", content_type=content_type)
    assert answer.status == 400
    answer = post_photo(server, b"x", content_type="multipart/form-data")
    assert answer.status == 400 and "boundary" in answer.error
    assert request(server, "GET", "/v1/colourise").status == 405
    missing = request(server, "GET", "/v1/nothing")
    assert missing.status == 404 and missing.error == "not found"


# ---- limits, token, CORS, a full queue ----


def test_token_is_required_when_given(guarded: Server) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-of-some-length"},
        {"Authorization": TOKEN},
    ):
        for method, path in (
            ("GET", "/v1/health"),
            ("GET", "/v1/plugins"),
            ("POST", "/v1/colourise"),
        ):
            answer = request(
                guarded,
                method,
                path,
                GREY_JPEG if method == "POST" else None,
                {"Content-Type": "image/jpeg", **headers},
            )
            assert answer.status == 401, (headers, path)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "token" in answer.error
    assert post_photo(guarded, GREY_JPEG, headers=AUTH).status == 200
    assert request(guarded, "GET", "/").status == 200  # the page asks for the token itself


def test_no_cors_unless_an_origin_is_given(server: Server, guarded: Server) -> None:
    asked = {"Origin": ORIGIN}
    assert (
        "access-control-allow-origin"
        not in request(server, "GET", "/v1/health", headers=asked).headers
    )
    allowed = request(guarded, "GET", "/v1/health", headers={**asked, **AUTH})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    preflight = request(
        guarded,
        "OPTIONS",
        "/v1/colourise",
        headers={
            **asked,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    other = request(guarded, "GET", "/v1/health", headers={"Origin": "http://evil.test", **AUTH})
    assert "access-control-allow-origin" not in other.headers


def test_size_limits_are_enforced_while_reading(guarded: Server) -> None:
    big = os.urandom(GUARDED_MAX_BYTES + 1)
    declared = post_photo(guarded, big, headers=AUTH)
    assert declared.status == 413 and "over the limit" in declared.error
    # Chunked, with no Content-Length: refused at the chunk that crosses the limit.
    connection = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=30)
    chunks = (big[i : i + 65536] for i in range(0, len(big) * 4, 65536))
    connection.request(
        "POST",
        "/v1/colourise",
        body=chunks,
        encode_chunked=True,
        headers={"Content-Type": "image/jpeg", **AUTH},
    )
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.loads(response.read())["error"]
    connection.close()
    body, content_type = multipart({"file": ("big.jpg", big)})
    answer = post_photo(guarded, body, content_type=content_type, headers=AUTH)
    assert answer.status == 413
    wide = cv2.imencode(".png", np.zeros((1000, 2001), np.uint8))[1].tobytes()
    pixels = post_photo(guarded, wide, content_type="image/png", headers=AUTH)
    assert pixels.status == 413 and "pixels" in pixels.error
    assert post_photo(guarded, GREY_JPEG, headers=AUTH).status == 200


def test_full_queue_answers_503_with_retry_after(guarded: Server) -> None:
    # A slow upload holds the only place (one worker, no waiting line) ...
    slow = socket.create_connection(("127.0.0.1", guarded.port))
    slow.sendall(
        f"POST /v1/colourise HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(GREY_JPEG)}\r\n\r\n".encode()
        + GREY_JPEG[:100]
    )
    try:
        deadline = time.monotonic() + 10
        while request(guarded, "GET", "/v1/health", headers=AUTH).json()["queue"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        busy = post_photo(guarded, GREY_JPEG, headers=AUTH)
        assert busy.status == 503 and "busy" in busy.error
        assert int(busy.headers["retry-after"]) >= 1
        # ... and its photo is still done once it arrives.
        slow.sendall(GREY_JPEG[100:])
        slow.settimeout(30)
        status_line = b""
        while not status_line.endswith(b"\r\n"):
            status_line += slow.recv(1)
        assert status_line.startswith(b"HTTP/1.1 200")
    finally:
        slow.close()
    assert post_photo(guarded, GREY_JPEG, headers=AUTH).status == 200


def test_off_loopback_needs_a_token_and_a_busy_port_is_one_line(
    server: Server, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"  # the settings model: the [serve] table counts too
    config.write_text('[serve]\nhost = "0.0.0.0"\n')
    result = run_coloi("serve", env={"COLOI_CONFIG": str(config), "COLOI_TOKEN": ""})
    assert result.returncode == 1 and "--host 0.0.0.0" in result.stderr
    for args, words in (
        (["--host", "0.0.0.0"], "--token"),
        (["--host", "192.0.2.1", "--token", "short"], "16 characters"),
        (["--port", str(server.port)], "cannot listen"),
    ):
        result = run_coloi("serve", *args, env={"COLOI_TOKEN": ""})
        assert result.returncode == 1
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


# ---- the page ----


def test_page_files_are_served_and_load_nothing_from_elsewhere(server: Server) -> None:
    page = request(server, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        answer = request(server, "GET", path)
        assert answer.status == 200 and answer.headers["content-type"].startswith(kind)
    static = REPO / "coloi" / "serve" / "static"
    for file in static.iterdir():
        text = file.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, file


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    found = _chromium()
    if found is None:
        pytest.skip(
            "no chromium and chromedriver installed (apt-get install chromium "
            "chromium-driver; .ci/run installs them)"
        )
    pytest.importorskip("selenium", reason="needs selenium (the test extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=412,1100",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors
    # The paths are given, so Selenium Manager has nothing to look up or download.
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _wait(predicate: Callable[[], Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


# The colourfulness of a shown picture, measured in the page: it is the browser's own view.
CHROMA_JS = """
const img = arguments[0];
if (!img.complete || img.naturalWidth === 0) return null;  // a new result still loading
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(img, 0, 0);
const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
let sum = 0;
for (let i = 0; i < data.length; i += 4) {
  sum += Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]);
}
return sum / (data.length / 4);
"""


def _shown_chroma(driver: Any, img: Any) -> float:
    """CHROMA_JS of ``img`` once it has loaded."""
    _wait(lambda: driver.execute_script(CHROMA_JS, img) is not None)
    return float(driver.execute_script(CHROMA_JS, img))


def _downloaded(folder: Path, name: str) -> Path:
    path = folder / name
    _wait(lambda: path.is_file() and not list(folder.glob("*.crdownload")))
    return path


def test_page_colourises_an_upload_in_chromium(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    downloads: Path = driver.downloads
    grey_jpeg = tmp_path / "street.jpg"
    grey_jpeg.write_bytes(GREY_JPEG)
    driver.get(server.url + "/")
    _wait(lambda: driver.execute_script("return document.body.dataset.ready"))
    steps = driver.find_elements(By.CSS_SELECTOR, "#post-steps input")
    assert {box.get_attribute("value") for box in steps} >= {"saturation", "warmth"}
    driver.find_element(By.ID, "files").send_keys(f"{SAMPLES / 'camera.png'}\n{grey_jpeg}")
    cards = driver.find_elements(By.CSS_SELECTOR, ".card")
    assert len(cards) == 2
    _wait(lambda: all(card.get_attribute("data-status") == "done" for card in cards))
    after = cards[0].find_element(By.CSS_SELECTOR, "img.after")
    before = cards[0].find_element(By.CSS_SELECTOR, "img.before")
    assert _shown_chroma(driver, before) < 1
    assert _shown_chroma(driver, after) > 4
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )  # fits a phone
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("arguments[0].scrollIntoView()", cards[0])
    driver.save_screenshot(str(ARTIFACTS / "serve-page.png"))

    cards[0].find_element(By.CSS_SELECTOR, "a.download").click()
    saved = Image.open(_downloaded(downloads, "camera_colourised.png"))
    assert saved.size == Image.open(SAMPLES / "camera.png").size and saved.mode == "RGB"
    assert chroma(np.asarray(saved)) > 4

    driver.find_element(By.ID, "download-all").click()
    with zipfile.ZipFile(_downloaded(downloads, "coloi-colourised.zip")) as archive:
        assert archive.namelist() == ["camera_colourised.png", "street_colourised.jpg"]
        for name in archive.namelist():
            assert chroma(decoded(archive.read(name))) > 4

    # Vividness 0 gives the grey photo back: the control reaches the colour.
    driver.execute_script(
        "const s = document.getElementById('vividness'); s.value = 0;"
        "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
    )
    _wait(
        lambda: (chroma_js := driver.execute_script(CHROMA_JS, after)) is not None and chroma_js < 1
    )
    _wait(lambda: all(card.get_attribute("data-status") == "done" for card in cards))
    # Nothing refused by the page's Content-Security-Policy, no script error, no failed load.
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_page_asks_for_the_token_once(guarded: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(guarded.url + "/")
    driver.execute_script("localStorage.clear()")
    driver.get(guarded.url + "/")
    form = driver.find_element(By.ID, "token-form")
    _wait(form.is_displayed)
    driver.find_element(By.ID, "token").send_keys(TOKEN + "\n")
    _wait(lambda: driver.execute_script("return document.body.dataset.ready"))
    driver.get(guarded.url + "/")
    _wait(lambda: driver.execute_script("return document.body.dataset.ready"))
    assert not driver.find_element(By.ID, "token-form").is_displayed()


def test_without_the_extra_serve_says_what_to_install() -> None:
    code = (
        "import sys\nsys.modules['starlette'] = None  # as if not installed\n"
        "from coloi.cli import app\napp(['serve'], prog_name='coloi')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "coloi: error: coloi serve needs starlette: pip install 'coloi[serve]'"
    )


def test_every_serve_option_is_documented() -> None:
    import typer.main

    from coloi.cli import app

    text = (REPO / "docs" / "serve.md").read_text()
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    for param in command.params:
        names = [*param.opts, *param.secondary_opts]
        if "--help" not in names:
            assert any(f"`{name}`" in text or f"`{name}," in text for name in names), names
