"""Your own labelled images as a dataset: ``--own NAME=PATH``.

``PATH`` is one of

* an **ImageFolder**: ``PATH/<class>/*.jpg`` (one sub-folder per class), split by a seeded,
  stratified draw (:class:`SplitRule`);
* **split folders**: ``PATH/{train,val,test}/<class>/*`` (``val`` optional: then drawn from
  train, stratified and seeded);
* a **CSV file** ``PATH`` (``*.csv``) with columns ``path,label`` and an optional ``split``
  (``train`` / ``val`` / ``test``); paths relative to the CSV's folder (or absolute). Without
  ``split`` the rows are split as an ImageFolder is; with it, a missing ``val`` is drawn
  from train.

Labels are indices into the sorted class names. The names a CLIP model reads for zero-shot
are the class names with ``_`` / ``-`` as spaces, or those of a ``classnames.csv``
(``class,name``) next to the images (in ``PATH``, or beside the CSV file).

A layout that cannot give a fair evaluation is refused with a one-line
:class:`~beyond_inet.datasets.base.DatasetLayoutError` that names the problem: fewer than two
classes, a class without images (or too few to split), unreadable images, a class in test
but not in train.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beyond_inet.datasets.base import (
    DatasetLayoutError,
    DatasetSpec,
    FoundDataset,
    Layout,
    Sample,
    aligned_rows,
    balanced_sample,
    images,
    relative_id,
    subdirs,
)

SPLITS = ("train", "val", "test")
#: Stored dataset names are ``own-<name>``.
STORED_PREFIX = "own-"
#: Optional display names of the classes (columns ``class,name``), read for zero-shot.
NAMES_FILE = "classnames.csv"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: How many unreadable files an error names.
_SHOWN = 3


@dataclass(frozen=True)
class OwnSource:
    """``--own NAME=PATH`` as given: the dataset's name and where its images are."""

    name: str
    path: Path

    @property
    def stored(self) -> str:
        """The dataset name its runs are stored under."""
        return STORED_PREFIX + self.name


def parse_own(text: str) -> OwnSource:
    """``NAME=PATH`` -> :class:`OwnSource`; raises :class:`ValueError` saying what is wrong."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--own takes NAME=PATH (an image folder or a CSV), got {text!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"--own name {name!r}: use letters, digits, '_', '-' or '.' (at most 64), "
            "starting with a letter or digit"
        )
    return OwnSource(name, Path(path).expanduser())


@dataclass(frozen=True)
class SplitRule:
    """The seeded, stratified split of images that come without one: per class
    (independently: the draw of one class does not depend on the others), a permutation
    from ``numpy.random.default_rng([seed, crc32(class name)])`` of the class's images
    sorted by id; its first ``max(1, round(test * n))`` go to test, the next
    ``max(1, round(val * n))`` to val, the rest to train. A missing val alone is drawn the
    same way from train, at ``val / (1 - test)``."""

    val: float = 0.2
    test: float = 0.2
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """As recorded with every run (part of its identity)."""
        return {"rule": "stratified", "val": self.val, "test": self.test, "seed": self.seed}

    def draw(
        self, items: Sequence[tuple[str, str]], parts: Sequence[tuple[str, float]]
    ) -> dict[str, list[tuple[str, str]]]:
        """Split (sample id, class) rows per class into ``parts`` ((name, fraction) in
        draw order; the last name takes the rest)."""
        by_class: dict[str, list[str]] = {}
        for sid, c in items:
            by_class.setdefault(c, []).append(sid)
        out: dict[str, list[tuple[str, str]]] = {name: [] for name, _ in parts}
        for c in sorted(by_class):
            ids = sorted(by_class[c])
            rng = np.random.default_rng([self.seed, zlib.crc32(c.encode())])
            perm = [ids[i] for i in rng.permutation(len(ids))]
            start = 0
            for name, fraction in parts[:-1]:
                k = max(1, round(fraction * len(ids)))
                out[name] += [(s, c) for s in perm[start : start + k]]
                start += k
            out[parts[-1][0]] += [(s, c) for s in perm[start:]]
        return {name: sorted(rows) for name, rows in out.items()}


@dataclass(frozen=True)
class OwnData:
    """An own dataset found and split: ``splits`` maps train / val / test to a
    :class:`FoundDataset` (labels: indices into ``classes``); ``names`` are the classes'
    display names (zero-shot); ``split_rule`` is ``given`` or ``stratified``."""

    source: OwnSource
    root: Path
    layout: str  # 'folders', 'split folders' or 'csv'
    classes: tuple[str, ...]
    names: tuple[str, ...]
    splits: dict[str, FoundDataset]
    split_rule: str
    rule: SplitRule

    @property
    def stored(self) -> str:
        """The dataset name its runs are stored under."""
        return self.source.stored

    def sizes(self) -> dict[str, int]:
        """Images per split."""
        return {s: len(self.splits[s].samples) for s in SPLITS}

    def fingerprint(self) -> str:
        """What is evaluated: the three splits' fingerprints (files and their split) and
        every image's class (a relabelled CSV is another dataset)."""
        h = hashlib.sha256()
        for split in SPLITS:
            for sample in self.splits[split].samples:
                h.update(f"{split}\t{sample.sample_id}\t{self.classes[sample.label]}\n".encode())
        files = "-".join(self.splits[s].fingerprint()[:12] for s in SPLITS)
        return f"{files}-{h.hexdigest()[:12]}"

    def protocol(self) -> dict[str, Any]:
        """The split as recorded with every run."""
        rule = self.rule.to_dict() if self.split_rule == "stratified" else {"rule": "given"}
        return {**rule, "layout": self.layout, "sizes": self.sizes()}


# --------------------------------------------------------------------------- readers

Rows = list[tuple[str, str]]  # (sample id relative to the root, class name)


def _folder_rows(base: Path, root: Path) -> Rows:
    """``base/<class>/*`` -> rows; a class folder without images is an error."""
    rows: Rows = []
    for d in subdirs(base):
        if d.name.startswith(".") or d.name == "__MACOSX":
            continue
        files = list(images(d))
        if not files:
            raise DatasetLayoutError(f"class {d.name!r} has no images ({d})")
        rows += [(relative_id(f, root), d.name) for f in files]
    return rows


def _read_csv(path: Path) -> tuple[Rows, dict[str, Rows] | None]:
    """A ``path,label[,split]`` CSV -> (all rows, rows per split when it has ``split``)."""
    root = Path(os.path.abspath(path)).parent
    with path.open(newline="", encoding="utf-8-sig") as fh:  # Excel's CSV starts with a BOM
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        if not {"path", "label"} <= cols:
            raise DatasetLayoutError(f"{path}: needs a header with columns path,label[,split]")
        rows: Rows = []
        split_of: dict[str, str] = {}
        first: dict[str, int] = {}
        for line, r in enumerate(reader, start=2):
            given = (r["path"] or "").strip()
            f = Path(os.path.abspath(root / given))  # absolute paths stay as they are
            label = (r["label"] or "").strip()
            if not label:
                raise DatasetLayoutError(f"{path}:{line}: empty label")
            if not f.is_file():
                raise DatasetLayoutError(f"{path}:{line}: {given} does not exist")
            rel = os.path.relpath(f, root)
            sid = f.as_posix() if rel.startswith("..") else Path(rel).as_posix()
            if sid in first:
                raise DatasetLayoutError(
                    f"{path}:{line}: {given} is listed again (first on line {first[sid]}); "
                    "an image may appear once"
                )
            first[sid] = line
            rows.append((sid, label))
            if "split" in cols:
                split = (r["split"] or "").strip().lower()
                if split not in SPLITS:
                    raise DatasetLayoutError(
                        f"{path}:{line}: split {r['split']!r} is none of train, val, test"
                    )
                split_of[sid] = split
    if not rows:
        raise DatasetLayoutError(f"{path}: no rows")
    if "split" not in cols:
        return rows, None
    return rows, {s: [r for r in rows if split_of[r[0]] == s] for s in SPLITS}


def _class_names(classes: Sequence[str], names_file: Path) -> tuple[str, ...]:
    """Display names: from ``names_file`` (``class,name``) where given, else the class
    name with ``_`` and ``-`` as spaces."""
    given: dict[str, str] = {}
    if names_file.is_file():
        with names_file.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"class", "name"} <= set(reader.fieldnames or ()):
                raise DatasetLayoutError(f"{names_file}: needs a header with columns class,name")
            given = {
                (r.get("class") or "").strip(): (r.get("name") or "").strip()
                for r in reader
                if (r.get("name") or "").strip()
            }
        unknown = sorted(set(given) - set(classes))
        if unknown:
            raise DatasetLayoutError(f"{names_file}: unknown classes {', '.join(unknown[:3])}")
    return tuple(given.get(c) or " ".join(re.split(r"[_-]+", c)).strip() or c for c in classes)


def _unreadable(root: Path, ids: Sequence[str]) -> list[tuple[str, str]]:
    """The files PIL cannot identify (their header only is read)."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for sid in ids:
        path = Path(sid) if Path(sid).is_absolute() else root / sid
        try:
            with Image.open(path) as im:
                im.size  # noqa: B018 (reads the header)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            bad.append((sid, " ".join(str(e).split()) or type(e).__name__))
    return bad


def _check(name: str, root: Path, chosen: dict[str, Rows]) -> None:
    """The problems that make a split unusable, as one-line errors."""
    classes = sorted({c for rows in chosen.values() for _, c in rows})
    if len(classes) < 2:
        found = f" ({classes[0]})" if classes else ""
        raise DatasetLayoutError(
            f"{name}: {len(classes)} class{found} in {root}; a classifier needs at least two"
        )
    train = {c for _, c in chosen["train"]}
    for split in ("test", "val"):
        extra = sorted({c for _, c in chosen[split]} - train)
        if extra:
            raise DatasetLayoutError(
                f"{name}: class {extra[0]!r} is in {split} but not in train "
                f"({len(extra)} such class{'es' if len(extra) > 1 else ''})"
            )
    bad = _unreadable(root, [sid for rows in chosen.values() for sid, _ in rows])
    if bad:
        shown = "; ".join(f"{s} ({e})" for s, e in bad[:_SHOWN])
        raise DatasetLayoutError(
            f"{name}: {len(bad)} unreadable image{'s' if len(bad) > 1 else ''} in {root}: "
            f"{shown}{' ...' if len(bad) > _SHOWN else ''}"
        )


def _stratified(name: str, rows: Rows, rule: SplitRule) -> dict[str, Rows]:
    """Train / val / test of rows without a split (each class needs 3 images)."""
    counts: dict[str, int] = {}
    for _, c in rows:
        counts[c] = counts.get(c, 0) + 1
    few = sorted(c for c, n in counts.items() if n < 3)
    if few and len(counts) >= 2:
        raise DatasetLayoutError(
            f"{name}: class {few[0]!r} has {counts[few[0]]} image(s); a stratified "
            "train / val / test split needs at least 3 per class"
        )
    return rule.draw(rows, (("test", rule.test), ("val", rule.val), ("train", 1.0)))


def _with_val(given: dict[str, Rows], rule: SplitRule) -> tuple[dict[str, Rows], bool]:
    """Given splits; a missing val drawn from train (stratified; classes with a single
    train image stay in train). Returns (splits, whether val was drawn)."""
    if given.get("val"):
        return given, False
    counts: dict[str, int] = {}
    for _, c in given["train"]:
        counts[c] = counts.get(c, 0) + 1
    splittable = [(s, c) for s, c in given["train"] if counts[c] >= 2]
    kept = [(s, c) for s, c in given["train"] if counts[c] < 2]
    drawn = rule.draw(splittable, (("val", rule.val / (1 - rule.test)), ("train", 1.0)))
    return {
        "train": sorted(drawn["train"] + kept),
        "val": drawn["val"],
        "test": given["test"],
    }, True


def _spec(source: OwnSource, split: str, layout: str) -> DatasetSpec:
    return DatasetSpec(
        f"{source.stored}/{split}",
        f"{source.name} ({split})",
        Layout(str(source.path), layout, lambda _r: []),
        "your own images (--own NAME=PATH)",
    )


def load_own(source: OwnSource, rule: SplitRule = SplitRule(), limit: int | None = None) -> OwnData:
    """Find, check and split an own dataset; ``limit`` caps the test split (smoke runs).
    Raises :class:`DatasetLayoutError` (one line) when it is absent or unusable."""
    path = source.path
    given: dict[str, Rows] | None
    if path.is_file() and path.suffix.lower() == ".csv":
        root, layout = path.parent, "csv"
        rows, given = _read_csv(path)
        names_file = root / NAMES_FILE
    elif path.is_dir():
        root, names_file = path, path / NAMES_FILE
        if (path / "train").is_dir() != (path / "test").is_dir():
            has, lacks = ("train", "test") if (path / "train").is_dir() else ("test", "train")
            raise DatasetLayoutError(
                f"{source.name}: {path} has {has}/ but no {lacks}/: give both as "
                f"{path}/{{train,test}}/<class>/ (val optional), or one folder per class "
                "for a drawn split"
            )
        if (path / "train").is_dir() and (path / "test").is_dir():
            layout = "split folders"
            given = {s: _folder_rows(path / s, path) if (path / s).is_dir() else [] for s in SPLITS}
            rows = [r for s in SPLITS for r in given[s]]
        else:
            layout, given = "folders", None
            rows = _folder_rows(path, path)
    else:
        raise DatasetLayoutError(
            f"{source.name}: {path} is neither an image folder (<class>/*.jpg) nor a .csv file"
        )
    if not rows:
        loose = path.is_dir() and any(True for _ in images(path))
        raise DatasetLayoutError(
            f"{source.name}: {path} holds images but no class sub-folders: put each class's "
            f"images in {path}/<class>/"
            if loose
            else f"{source.name}: no images in {path}"
        )
    if given is None:
        classes_all = {c for _, c in rows}
        if len(classes_all) < 2:
            _check(source.name, root, {"train": rows, "val": [], "test": []})
        chosen, split_rule = _stratified(source.name, rows, rule), "stratified"
    else:
        if not given["train"] or not given["test"]:
            missing = "train" if not given["train"] else "test"
            raise DatasetLayoutError(f"{source.name}: no {missing} images in {path}")
        chosen, drawn = _with_val(given, rule)
        split_rule = "given (val drawn from train)" if drawn else "given"
    _check(source.name, root, chosen)
    classes = tuple(sorted({c for _, c in rows}))
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        samples = [
            Sample(Path(sid) if Path(sid).is_absolute() else root / sid, sid, index[c])
            for sid, c in chosen[split]
        ]
        if split == "test" and limit:
            samples = balanced_sample(samples, limit)  # seeded, spread over the classes
        splits[split] = FoundDataset(_spec(source, split, layout), root, samples)
    names = _class_names(classes, names_file)
    return OwnData(source, root, layout, classes, names, splits, split_rule, rule)


def format_own_list(found: Sequence[OwnData | tuple[OwnSource, str]]) -> str:
    """``--list-datasets`` for the ``--own`` datasets: each with its layout, classes and
    split sizes (or the problem that keeps it from being used)."""
    rows = [("own dataset", "status", "classes", "train/val/test", "path")]
    details = []
    for item in found:
        if isinstance(item, OwnData):
            sizes = "/".join(str(n) for n in item.sizes().values())
            rows.append(
                (item.source.name, f"found ({item.layout}, {item.split_rule})",
                 str(len(item.classes)), sizes, str(item.source.path))
            )  # fmt: skip
            shown = ", ".join(item.classes[:8]) + (" ..." if len(item.classes) > 8 else "")
            details.append(f"{item.source.name}: classes {shown}")
        else:
            src, problem = item
            rows.append((src.name, "bad layout", "-", "-", str(src.path)))
            details.append(f"{src.name}: problem: {problem}")
    return "\n".join([*aligned_rows(rows), "", *details])
