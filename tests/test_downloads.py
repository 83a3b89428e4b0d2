"""Downloads against a loopback HTTP server serving small archives (never the internet):
Range resume, interrupted transfers, checksum / size checks, atomic extraction, offline."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from beyond_inet.datasets import DATASETS, discover
from beyond_inet.datasets.downloads import (
    DOWNLOADS_DIR,
    TABLE_ENV,
    Archive,
    DownloadError,
    download_dataset,
    download_table,
    fetch,
    parse_table,
)
from beyond_inet.registry import UnknownNameError
from precompute.cli import main
from tests.conftest import noise_image

R_WNID = "n01443537"  # an ImageNet-R class


class Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut_after`` bytes then drops
    the connection; records the Range header of every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.sent: list[int] = []
        self.cut_after: int | None = None
        self.ignore_range = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                if outer.ignore_range:
                    rng = None
                body = outer.files.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body) and rng:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                chunk = body[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if outer.cut_after is not None:
                    chunk = chunk[: outer.cut_after]
                outer.sent.append(len(chunk))  # before writing: the client may finish first
                self.wfile.write(chunk)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    noise_image(np.random.default_rng(seed), 32, 40).save(buf, format="JPEG")
    return buf.getvalue()


def make_tar(members: dict[str, bytes], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def r_archive() -> bytes:
    """An ImageNet-R-like tarball: ``imagenet-r/<wnid>/*.jpg`` plus a README."""
    files = {f"imagenet-r/{R_WNID}/{i}.jpg": _jpeg(i) for i in range(3)}
    files["imagenet-r/README.txt"] = b"renditions"
    return make_tar(files)


def _archive(server: Server, dataset: str, name: str, data: bytes, **kw: object) -> Archive:
    server.files[f"/{name}"] = data
    fields = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **kw}
    return Archive(dataset, f"{server.url}/{name}", name, **fields)  # type: ignore[arg-type]


def _silent(_msg: str) -> None:
    pass


def test_shipped_table_covers_the_public_datasets() -> None:
    table = download_table()
    assert set(table) == {
        "cue-conflict",
        "imagenet-r",
        "imagenet-a",
        "imagenet-v2",
        "imagenet-sketch",
        "pug-imagenet",
        "imagenet-c",
        "ood-ninco",  # the OOD sets with a public archive of their own
        "ood-inaturalist",
        "ood-textures",
        "imagenet-o",
    }
    assert all(n in DATASETS for n in table)
    assert len(table["imagenet-c"]) == 4 and all(a.md5 for a in table["imagenet-c"])
    assert {a.top_folder for a in table["imagenet-c"]} == {"keep"}
    assert table["imagenet-r"][0].size == 2191079936 and len(table["imagenet-r"][0].sha256) == 64


def test_download_verify_and_extract(server: Server, tmp_path: Path) -> None:
    table = {"imagenet-r": (_archive(server, "imagenet-r", "imagenet-r.tar", r_archive()),)}
    target = download_dataset("imagenet-r", tmp_path, table, progress=False, log=_silent)
    assert target == tmp_path / "imagenet-r"
    found = discover(DATASETS.get("imagenet-r"), target)
    assert len(found.samples) == 3 and (target / "README.txt").exists()  # top folder unwrapped
    assert not list((tmp_path / DOWNLOADS_DIR).iterdir())  # archive removed after extraction
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".imagenet-r")] == []
    # already present: left alone, nothing fetched
    n = len(server.ranges)
    download_dataset("imagenet-r", tmp_path, table, progress=False, log=_silent)
    assert len(server.ranges) == n


def test_zip_with_sketch_level_and_multi_archive_merge(server: Server, tmp_path: Path) -> None:
    sketch = make_zip({f"sketch/n01440764/{i}.JPEG": _jpeg(i) for i in range(2)})
    blur = make_tar({f"defocus_blur/{s}/n01440764/a.JPEG": _jpeg(s) for s in (1, 2)}, gz=False)
    noise = make_tar({f"gaussian_noise/{s}/n01440764/a.JPEG": _jpeg(s) for s in (1, 2)})
    table = {
        "imagenet-sketch": (_archive(server, "imagenet-sketch", "ImageNet-Sketch.zip", sketch),),
        "imagenet-c": (
            _archive(server, "imagenet-c", "blur.tar", blur, top_folder="keep"),
            _archive(server, "imagenet-c", "noise.tar", noise, top_folder="keep"),
        ),
    }
    sk = download_dataset("imagenet-sketch", tmp_path, table, progress=False, log=_silent)
    assert len(discover(DATASETS.get("imagenet-sketch"), sk).samples) == 2
    c = download_dataset("imagenet-c", tmp_path, table, progress=False, log=_silent)
    assert sorted(p.name for p in c.iterdir()) == ["defocus_blur", "gaussian_noise"]
    groups = {s.group for s in discover(DATASETS.get("imagenet-c"), c).samples}
    assert groups == {"defocus_blur:1", "defocus_blur:2", "gaussian_noise:1", "gaussian_noise:2"}


def test_resume_sends_a_range_request(server: Server, tmp_path: Path) -> None:
    data = r_archive()
    archive = _archive(server, "imagenet-r", "imagenet-r.tar", data)
    (tmp_path / "imagenet-r.tar.part").write_bytes(data[:1000])
    path = fetch(archive, tmp_path, progress=False)
    assert server.ranges == ["bytes=1000-"] and server.sent == [len(data) - 1000]
    assert path.read_bytes() == data and not (tmp_path / "imagenet-r.tar.part").exists()


def test_interrupted_download_resumes_and_never_looks_complete(
    server: Server, tmp_path: Path
) -> None:
    data = r_archive()
    table = {"imagenet-r": (_archive(server, "imagenet-r", "imagenet-r.tar", data),)}
    server.cut_after = 700
    with pytest.raises(DownloadError, match=r"interrupted.*resume"):
        download_dataset("imagenet-r", tmp_path, table, progress=False, log=_silent)
    assert not (tmp_path / "imagenet-r").exists()
    part = tmp_path / DOWNLOADS_DIR / "imagenet-r.tar.part"
    assert part.stat().st_size == 700
    server.cut_after = None
    download_dataset("imagenet-r", tmp_path, table, progress=False, log=_silent)
    assert server.ranges[-1] == "bytes=700-"
    assert len(discover(DATASETS.get("imagenet-r"), tmp_path / "imagenet-r").samples) == 3


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    data = r_archive()
    archive = _archive(server, "imagenet-r", "x.tar", data)
    (tmp_path / "x.tar.part").write_bytes(b"garbage-prefix")
    server.ignore_range = True  # answers 200 with the whole file: the .part is rewritten
    assert fetch(archive, tmp_path, progress=False).read_bytes() == data
    assert server.ranges == ["bytes=14-"]


def test_stale_part_longer_than_the_file_is_caught(server: Server, tmp_path: Path) -> None:
    data = r_archive()
    archive = _archive(server, "imagenet-r", "x.tar", data)
    (tmp_path / "x.tar.part").write_bytes(data + b"extra")  # the server answers 416
    with pytest.raises(DownloadError, match="corrupt"):
        fetch(archive, tmp_path, progress=False)
    assert not (tmp_path / "x.tar.part").exists()
    assert fetch(archive, tmp_path, progress=False).read_bytes() == data


def test_checksum_mismatch_deletes_and_fails(server: Server, tmp_path: Path) -> None:
    data = r_archive()
    bad = _archive(server, "imagenet-r", "imagenet-r.tar", data, sha256="0" * 64)
    with pytest.raises(DownloadError, match=r"corrupt.*sha256"):
        download_dataset(
            "imagenet-r", tmp_path, {"imagenet-r": (bad,)}, progress=False, log=_silent
        )
    assert not (tmp_path / "imagenet-r").exists()
    assert not list((tmp_path / DOWNLOADS_DIR).iterdir())
    md5 = _archive(server, "imagenet-r", "imagenet-r.tar", data, sha256=None, md5="f" * 32)
    with pytest.raises(DownloadError, match="md5"):
        fetch(md5, tmp_path, progress=False)
    short = _archive(server, "imagenet-r", "imagenet-r.tar", data, size=len(data) + 1, sha256=None)
    with pytest.raises(DownloadError, match="size"):
        fetch(short, tmp_path, progress=False)


def test_bad_archives_leave_no_dataset(server: Server, tmp_path: Path) -> None:
    evil = make_tar({"../escape.txt": b"x", "imagenet-r/a.jpg": _jpeg(0)})
    table = {"imagenet-r": (_archive(server, "imagenet-r", "evil.tar.gz", evil),)}
    with pytest.raises(DownloadError, match="unsafe"):
        download_dataset("imagenet-r", tmp_path, table, progress=False, log=_silent)
    junk = {"imagenet-r": (_archive(server, "imagenet-r", "junk.tar", b"not an archive" * 10),)}
    with pytest.raises(DownloadError, match="neither a tar nor a zip"):
        download_dataset("imagenet-r", tmp_path, junk, progress=False, log=_silent)
    assert not (tmp_path / "imagenet-r").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".extracting")]


def test_offline_and_http_errors_are_one_line(server: Server, tmp_path: Path) -> None:
    with socket.socket() as s:  # a free port with nobody listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    offline = Archive("imagenet-r", f"http://127.0.0.1:{port}/imagenet-r.tar", "imagenet-r.tar")
    with pytest.raises(DownloadError, match="offline") as err:
        fetch(offline, tmp_path, progress=False, timeout=5)
    assert "\n" not in str(err.value)
    missing = Archive("imagenet-r", f"{server.url}/nope.tar", "nope.tar")
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(missing, tmp_path, progress=False)


def test_names_without_downloads_and_typos() -> None:
    with pytest.raises(DownloadError, match="Manual download under the ImageNet licence"):
        download_dataset("imagenet-val", Path("/nonexistent"), {}, log=_silent)
    with pytest.raises(UnknownNameError, match="Did you mean 'imagenet-r'"):
        download_dataset("imagenet-rr", Path("/nonexistent"), {}, log=_silent)


def test_cli_download_uses_the_table_override(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = r_archive()
    server.files["/imagenet-r.tar"] = data
    csv_path = tmp_path / "table.csv"
    csv_path.write_text(
        "dataset,url,filename,size,sha256,md5\n"
        f"imagenet-r,{server.url}/imagenet-r.tar,imagenet-r.tar,{len(data)},"
        f"{hashlib.sha256(data).hexdigest()},\n"
    )
    monkeypatch.setenv(TABLE_ENV, str(csv_path))
    assert set(parse_table(csv_path.read_text())) == {"imagenet-r"}
    root = tmp_path / "root"
    assert (
        main(["--download", "imagenet-r", "--data-root", str(root), "--quiet", "--list-datasets"])
        == 0
    )
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("imagenet-r "))
    assert line.split()[1:3] == ["found", "3"]
    assert main(["--download", "imagenet-val", "--data-root", str(root)]) == 1
    assert "cannot be downloaded automatically" in capsys.readouterr().err
    assert main(["--download", "imagenet-rr", "--data-root", str(root)]) == 2
