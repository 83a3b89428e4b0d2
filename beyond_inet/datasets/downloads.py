"""Finding and getting datasets: the dataset listing and resumable, verified downloads.

The URL table is data (``beyond_inet/resources/downloads.csv``: dataset, url, filename and,
where published, size / sha256 / md5); ``$BEYOND_INET_DOWNLOADS`` names a CSV of the same
shape that replaces it (tests point it at a loopback server). A download:

1. streams each archive into ``<data-root>/.downloads/<filename>.part``, resuming an
   interrupted ``.part`` with an HTTP ``Range`` request (progress bar: tqdm);
2. verifies the size (the table's, else the server's Content-Length) and the checksum
   where one is published; a mismatch deletes the file and fails;
3. extracts every archive of the dataset (tar, tar.gz or zip; no paths outside the
   target) into a staging folder next to the target, unwraps an archive's single top-level
   folder (unless the table's ``top_folder`` says ``keep``) and renames the staging folder
   into place. Until that rename the dataset folder does not exist, so an interrupted
   download never looks like a dataset.

Network failures fail fast with one line (no retries); the caller prints it.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from beyond_inet.datasets import DATASETS, DatasetLayoutError, DatasetSpec, discover, locate
from beyond_inet.datasets.base import aligned_rows
from beyond_inet.log import Log

TABLE_ENV = "BEYOND_INET_DOWNLOADS"
DOWNLOADS_DIR = ".downloads"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or extraction failed (network, HTTP status, size or checksum)."""


@dataclass(frozen=True)
class Archive:
    """One downloadable file of a dataset; size and checksums where published."""

    dataset: str
    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    #: the archive's top-level folder: 'auto' (unwrap it when it is the only entry),
    #: 'keep' (the archive holds the dataset's own folders, e.g. ImageNet-C's corruptions)
    top_folder: str = "auto"


DownloadTable = Mapping[str, tuple[Archive, ...]]


def parse_table(text: str) -> dict[str, tuple[Archive, ...]]:
    """CSV text (dataset, url, filename, size, sha256, md5[, ...]) -> dataset -> archives."""
    out: dict[str, list[Archive]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        size = (row.get("size") or "").strip()
        out.setdefault(row["dataset"], []).append(
            Archive(
                dataset=row["dataset"],
                url=row["url"],
                filename=row["filename"],
                size=int(size) if size else None,
                sha256=(row.get("sha256") or "").strip().lower() or None,
                md5=(row.get("md5") or "").strip().lower() or None,
                top_folder=(row.get("top_folder") or "").strip() or "auto",
            )
        )
    return {k: tuple(v) for k, v in out.items()}


def download_table() -> dict[str, tuple[Archive, ...]]:
    """The shipped URL table, or the CSV named by ``$BEYOND_INET_DOWNLOADS``."""
    override = os.environ.get(TABLE_ENV)
    if override:
        return parse_table(Path(override).read_text("utf-8"))
    return parse_table(
        resources.files("beyond_inet.resources").joinpath("downloads.csv").read_text("utf-8")
    )


# --------------------------------------------------------------------------------------
# Fetching one archive
# --------------------------------------------------------------------------------------


def _open(url: str, start: int, timeout: float):  # type: ignore[no-untyped-def]
    req = urllib.request.Request(url, headers={"User-Agent": "beyond-inet"})
    if start > 0:
        req.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:
            return e
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot download {url}: {reason} (offline, or the host is unreachable)"
        ) from None


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, archive: Archive, expected_size: int | None = None) -> None:
    """Check size (table, else ``expected_size``) and the published checksum; on a mismatch
    delete ``path`` and raise :class:`DownloadError`."""
    size = archive.size if archive.size is not None else expected_size
    actual = path.stat().st_size
    problem = None
    if size is not None and actual != size:
        problem = f"size {actual} bytes, expected {size}"
    else:
        for algo in ("sha256", "md5"):
            want = getattr(archive, algo)
            if want:
                got = _digest(path, algo)
                if got != want:
                    problem = f"{algo} {got}, expected {want}"
                break
    if problem:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.filename} from {archive.url} is corrupt ({problem}); "
            "the file was deleted, run the download again."
        )


def fetch(archive: Archive, folder: Path, progress: bool = True, timeout: float = 20.0) -> Path:
    """Download ``archive`` into ``folder`` (resuming ``<filename>.part``) and verify it.

    Returns the verified file. An already complete, verified file is reused.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / archive.filename
    if final.exists():
        verify(final, archive)
        return final
    part = folder / (archive.filename + ".part")
    start = part.stat().st_size if part.exists() else 0
    resp = _open(archive.url, start, timeout)
    if getattr(resp, "code", None) == 416:  # nothing left to send: the .part is complete
        resp.close()
        verify(part, archive)
        part.replace(final)
        return final
    status = getattr(resp, "status", 200)
    length = resp.headers.get("Content-Length")
    if start > 0 and not (
        status == 206 and str(resp.headers.get("Content-Range", "")).startswith(f"bytes {start}-")
    ):
        start = 0  # the server ignored the range (or answered another one): start over
        if status == 206:
            resp.close()
            resp = _open(archive.url, 0, timeout)
            length = resp.headers.get("Content-Length")
    total = (start + int(length)) if length is not None else archive.size
    mode = "ab" if start > 0 else "wb"
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=archive.filename,
        disable=not progress,
    )
    try:
        with resp, part.open(mode) as out, bar:
            while block := resp.read(CHUNK):
                out.write(block)
                bar.update(len(block))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(
            f"download of {archive.url} interrupted: {e}; run it again to "
            f"resume from {part.stat().st_size} bytes."
        ) from None
    got = part.stat().st_size
    if total is not None and got < total:  # the connection closed early
        raise DownloadError(
            f"download of {archive.url} interrupted at {got} of {total} bytes; "
            "run it again to resume."
        )
    verify(part, archive, total)
    part.replace(final)
    return final


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------


def _extract_one(archive: Path, dest: Path) -> None:
    """Extract a tar / tar.gz / zip into ``dest``; members may not leave ``dest``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            root = dest.resolve()
            for name in zf.namelist():
                target = (dest / name).resolve()
                if not target.is_relative_to(root):
                    raise DownloadError(f"{archive.name}: member {name!r} escapes the target.")
            zf.extractall(dest)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                tf.extractall(dest, filter="data")
            except tarfile.FilterError as e:
                raise DownloadError(f"{archive.name}: unsafe member: {e}") from None
        return
    raise DownloadError(f"{archive.name} is neither a tar nor a zip archive.")


def _content_root(folder: Path) -> Path:
    """``folder`` itself, or its only top-level folder (junk like __MACOSX ignored)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def _merge_into(src: Path, dest: Path) -> None:
    """Move the children of ``src`` into ``dest``, merging folders that exist in both."""
    dest.mkdir(exist_ok=True)
    for child in src.iterdir():
        if child.name == "__MACOSX":
            continue
        there = dest / child.name
        if there.is_dir() and child.is_dir():
            _merge_into(child, there)
        else:
            child.replace(there)


def extract_atomically(
    archives: Sequence[Path], target: Path, unwrap: Sequence[bool] | None = None
) -> None:
    """Extract ``archives`` into a staging folder next to ``target``, then rename it into
    place (``target`` must not exist). Where ``unwrap`` (default: all) says so, an archive's
    single top-level folder is unwrapped; the archives' contents are merged. A leftover
    staging folder from an interrupted run is removed first."""
    unwrap = list(unwrap) if unwrap is not None else [True] * len(archives)
    staging = target.parent / f".{target.name}.extracting"
    if staging.exists():
        shutil.rmtree(staging)
    merged = staging / "content"
    merged.mkdir(parents=True)
    try:
        for i, a in enumerate(archives):
            one = staging / f"archive{i}"
            one.mkdir()
            _extract_one(a, one)
            _merge_into(_content_root(one) if unwrap[i] else one, merged)
        merged.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------


def downloadable(table: DownloadTable | None = None) -> list[str]:
    """Dataset names that ``--download`` can fetch."""
    return list((table if table is not None else download_table()).keys())


def download_dataset(
    name: str,
    data_root: Path,
    table: DownloadTable | None = None,
    progress: bool = True,
    keep_archives: bool = False,
    log: Log = print,
    timeout: float = 20.0,
) -> Path:
    """Download, verify and extract dataset ``name`` into ``data_root / spec.layout.subdir``.

    Unknown names fail with suggestions; datasets without a public download fail with how to
    get them. A dataset already present is left alone. Returns the dataset folder.
    """
    spec = DATASETS.get(name)
    table = table if table is not None else download_table()
    if name not in table:
        raise DownloadError(f"{name} cannot be downloaded automatically: {spec.how_to_get}")
    target = locate(spec, data_root)
    if target.exists():
        if any(target.iterdir()):
            log(f"{name}: already present at {target} (delete it to download again).")
            return target
        target.rmdir()
    cache = data_root / DOWNLOADS_DIR
    files = []
    for archive in table[name]:
        log(f"{name}: fetching {archive.url}")
        files.append(fetch(archive, cache, progress=progress, timeout=timeout))
    log(f"{name}: extracting into {target}")
    extract_atomically(files, target, [a.top_folder != "keep" for a in table[name]])
    if not keep_archives:
        for f in files:
            f.unlink(missing_ok=True)
    return target


# --------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetStatus:
    """One dataset as found (or not) under a data root."""

    spec: DatasetSpec
    root: Path
    status: str  # 'found', 'missing' or 'bad layout: ...'
    images: int
    downloadable: bool


def dataset_statuses(
    data_root: Path,
    dataset_paths: Mapping[str, Path] | None = None,
    table: DownloadTable | None = None,
) -> list[DatasetStatus]:
    """Every registered dataset with where it is expected, whether it is there and how many
    images it has."""
    paths = dataset_paths or {}
    can = set(downloadable(table))
    out = []
    for name, spec in DATASETS.items():
        root = locate(spec, data_root, paths.get(name))
        try:
            found = discover(spec, root)
            status, n = ("missing", 0) if found is None else ("found", len(found.samples))
        except (DatasetLayoutError, OSError, ValueError) as e:
            status, n = f"bad layout: {e}", 0
        out.append(DatasetStatus(spec, root, status, n, name in can))
    return out


def format_dataset_list(statuses: Sequence[DatasetStatus]) -> str:
    """A plain-text table (dataset, status, images, folder) and how to get each dataset."""
    rows = [("dataset", "status", "images", "folder")]
    rows += [
        (
            s.spec.name,
            s.status if not s.status.startswith("bad") else "bad layout",
            str(s.images),
            str(s.root),
        )
        for s in statuses
    ]
    lines = aligned_rows(rows)
    lines.append("")
    for s in statuses:
        lines.append(f"{s.spec.name}: {s.spec.description}")
        lines.append(f"  layout: {s.spec.layout.text}")
        if s.status.startswith("bad"):
            lines.append(f"  problem: {s.status[len('bad layout: ') :]}")
        lines.append(f"  get it: {s.spec.how_to_get}")
    return "\n".join(lines)
