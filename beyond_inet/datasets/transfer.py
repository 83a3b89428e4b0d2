"""Transfer tasks (the paper's VTAB-1k suite) and their split protocols, as data.

Each :class:`TransferTask` lives in ``<data-root>/vtab/<task>/`` in one of four forms,
tried in this order:

1. **VTAB-1k lists**: ``<task>/train800.txt``, ``val200.txt``, ``test.txt``, one
   ``<path> <label index>`` per line (the VTAB-1k export most adaptation codebases share);
2. **folders**: ``<task>/{train,val,test}/<class>/*.png`` (``val`` optional);
3. **CSV**: ``<task>/{train,val,test}.csv`` with columns ``path,label`` (``path`` relative
   to ``<task>/``; ``label`` a class name or an integer);
4. **torchvision**: the task's torchvision dataset class with ``root=<task>/`` (it keeps its
   own layout below; ``--download`` fetches it with torchvision's verified download).

Splits follow a :class:`SplitProtocol`. VTAB-1k (default) uses VTAB's **fixed** splits where
the layout carries its order: the lists as given, or a CSV export with ``val.csv``, whose
first 800 train rows and first 200 val rows are VTAB's ``train[:800]`` / ``validation[:200]``.
Folders (sorted by class) and torchvision carry no such order: there 800 train + 200 val
images are drawn from the training pool (train, plus val) with a fixed seed, and the run
records ``split_rule = "seeded"``. ``full`` uses the whole pool, holding out a seeded 10%
for choosing the regularisation.
Test is always the task's own test split; a task without one (SUN397, EuroSAT, Caltech101
in torchvision) holds out a seeded 20% of its images as test first. Labels are the task's
class indices (sorted class names), not ImageNet's.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    images,
    relative_id,
    subdirs,
)
from beyond_inet.log import Log
from beyond_inet.registry import Registry

SPLITS = ("train", "val", "test")
GROUPS = ("natural", "specialized", "structured")
#: Stored dataset names are ``vtab-<task>``.
STORED_PREFIX = "vtab-"
SUBDIR = "vtab"


@dataclass(frozen=True)
class SplitProtocol:
    """How train / val are drawn from a task's training pool.

    ``train`` / ``val``: image counts (VTAB-1k: 800 / 200); ``train=None`` uses the whole
    pool minus ``val_fraction`` held out as val. ``holdout_test``: the test fraction held
    out (seeded) for a task without a test split. Everything is seeded by ``seed``.
    ``fixed``: take the first ``train`` / ``val`` rows of a layout's own train and val
    splits where it has an order (VTAB-1k lists, CSV), not a seeded draw.
    """

    name: str
    train: int | None = 800
    val: int = 200
    val_fraction: float = 0.1
    holdout_test: float = 0.2
    seed: int = 0
    fixed: bool = False

    def split_pool(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(train positions, val positions) among a pool of ``n`` images: a seeded
        permutation, its first ``train`` then the next ``val`` (VTAB-1k; a pool smaller
        than 1000 keeps the 80/20 ratio), or val = the first ``val_fraction`` (full)."""
        perm = np.random.default_rng(self.seed).permutation(n)
        if self.train is None:
            n_val = max(1, round(self.val_fraction * n))
            return np.sort(perm[n_val:]), np.sort(perm[:n_val])
        want = self.train + self.val
        n_train = self.train if n >= want else round(n * self.train / want)
        n_val = self.val if n >= want else n - n_train
        return np.sort(perm[:n_train]), np.sort(perm[n_train : n_train + n_val])

    def split_test(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(pool positions, test positions) of a task without a test split: a seeded
        ``holdout_test`` fraction (seed + 1, independent of the pool's draw)."""
        perm = np.random.default_rng(self.seed + 1).permutation(n)
        n_test = max(1, round(self.holdout_test * n))
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])

    def to_dict(self) -> dict[str, Any]:
        """The protocol as recorded with every run (part of its identity)."""
        return {
            "name": self.name,
            "train": self.train,
            "val": self.val,
            "val_fraction": self.val_fraction,
            "holdout_test": self.holdout_test,
            "seed": self.seed,
        }  # ``fixed`` stays out: the splits' content is in the run key, the rule in settings


SPLIT_PROTOCOLS: Registry[SplitProtocol] = Registry("transfer protocol")
SPLIT_PROTOCOLS.add("vtab-1k", SplitProtocol("vtab-1k", fixed=True))
SPLIT_PROTOCOLS.add("full", SplitProtocol("full", train=None))


@dataclass(frozen=True)
class TorchvisionSource:
    """A torchvision dataset class and the keyword arguments of its splits: ``pool`` (one
    dict per split that forms the training pool) and ``test`` (``()`` = none: held out)."""

    cls: str
    pool: tuple[dict[str, Any], ...]
    test: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferTask:
    """One VTAB task: its name, the paper's label, group, whether mean per-class accuracy is
    its headline, an optional torchvision source, and how to get it."""

    name: str
    label: str
    group: str
    how_to_get: str
    torchvision: TorchvisionSource | None = None
    per_class: bool = False

    @property
    def stored(self) -> str:
        """The dataset name runs of this task are stored under."""
        return STORED_PREFIX + self.name


def _tv(cls: str, pool: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]] = (), **kw: Any):
    return TorchvisionSource(cls, tuple(pool), tuple(test), kw)


_TFDS = (
    "not in torchvision: export the TFDS / VTAB splits to the folder or CSV layout "
    "(<task>/{train,val,test}/<class>/*, or <task>/{train,val,test}.csv with path,label)"
)
_TV = (
    "`python -m precompute --download <task> --data-root DIR` (torchvision), or by hand in "
    "the folder / CSV layout"
)

_TASKS = (
    TransferTask(
        "caltech101", "Caltech101", "natural", _TV, _tv("Caltech101", [{}]), per_class=True
    ),
    TransferTask(
        "cifar100",
        "CIFAR-100",
        "natural",
        _TV,
        _tv("CIFAR100", [{"train": True}], [{"train": False}]),
    ),
    TransferTask(
        "dtd",
        "DTD",
        "natural",
        _TV,
        _tv("DTD", [{"split": "train"}, {"split": "val"}], [{"split": "test"}]),
    ),
    TransferTask(
        "flowers102",
        "Flowers102",
        "natural",
        _TV,
        _tv("Flowers102", [{"split": "train"}, {"split": "val"}], [{"split": "test"}]),
        per_class=True,
    ),
    TransferTask(
        "pets",
        "Pets",
        "natural",
        _TV,
        _tv("OxfordIIITPet", [{"split": "trainval"}], [{"split": "test"}]),
        per_class=True,
    ),
    TransferTask("sun397", "Sun397", "natural", _TV, _tv("SUN397", [{}])),
    TransferTask(
        "svhn", "SVHN", "natural", _TV, _tv("SVHN", [{"split": "train"}], [{"split": "test"}])
    ),
    TransferTask(
        "camelyon",
        "Camelyon",
        "specialized",
        _TV + " (torchvision's PCAM needs h5py)",
        _tv("PCAM", [{"split": "train"}, {"split": "val"}], [{"split": "test"}]),
    ),
    TransferTask("eurosat", "EuroSAT", "specialized", _TV, _tv("EuroSAT", [{}])),
    TransferTask("resisc45", "Resisc45", "specialized", _TFDS),
    TransferTask("retinopathy", "Retinopathy", "specialized", _TFDS),
    TransferTask(
        "clevr-count",
        "Clevr-Count",
        "structured",
        _TV + " (test = CLEVR's val split: its test split has no labels)",
        _tv("CLEVRClassification", [{"split": "train"}], [{"split": "val"}]),
    ),
    TransferTask("clevr-dist", "Clevr-Dist", "structured", _TFDS),
    TransferTask("dmlab", "DMLAB", "structured", _TFDS),
    TransferTask("kitti-dist", "KITTI-Dist", "structured", _TFDS),
    TransferTask("dsprites-loc", "dSpr-Loc", "structured", _TFDS),
    TransferTask("dsprites-ori", "dSpr-Ori", "structured", _TFDS),
    TransferTask("snorb-azim", "sNORB-Azim", "structured", _TFDS),
    TransferTask("snorb-elev", "sNORB-Elev", "structured", _TFDS),
)

TASKS: Registry[TransferTask] = Registry("transfer task")
for _t in _TASKS:
    TASKS.add(_t.name, _t)


def expand_tasks(names: Sequence[str]) -> list[TransferTask]:
    """Task specs by name; ``all`` = the 19 VTAB tasks, a group name = its tasks."""
    out: list[TransferTask] = []
    for n in names:
        if n in ("all", "vtab"):
            out += [t for _, t in TASKS.items()]
        elif n in GROUPS:
            out += [t for _, t in TASKS.items() if t.group == n]
        else:
            out.append(TASKS.get(n))
    return list({t.name: t for t in out}.values())


# --------------------------------------------------------------------------- readers


Rows = list[tuple[str, str, Path]]  # (sample id, class name, file)


def read_folder_split(task_root: Path, split: str) -> Rows | None:
    """``<task>/<split>/<class>/*`` -> rows; ``None`` without that folder."""
    base = task_root / split
    if not base.is_dir():
        return None
    return [(relative_id(f, task_root), d.name, f) for d in subdirs(base) for f in images(d)]


def read_csv_split(task_root: Path, split: str) -> Rows | None:
    """``<task>/<split>.csv`` (columns ``path,label``) -> rows; ``None`` without the file.
    A missing column or a listed file that does not exist is a layout error."""
    f = task_root / f"{split}.csv"
    if not f.is_file():
        return None
    with f.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetLayoutError(f"{f}: needs a header with columns path,label")
        rows = []
        for line, r in enumerate(reader, start=2):
            p = task_root / r["path"]
            if not p.is_file():
                raise DatasetLayoutError(
                    f"{f}:{line}: {r['path']} does not exist under {task_root}"
                )
            rows.append((relative_id(p, task_root), r["label"].strip(), p))
    return rows


#: The VTAB-1k list files: split -> file name.
LIST_FILES = {"train": "train800.txt", "val": "val200.txt", "test": "test.txt"}


def read_list_split(task_root: Path, split: str) -> Rows | None:
    """``<task>/train800.txt`` / ``val200.txt`` / ``test.txt`` (``<path> <label index>`` per
    line, ``path`` relative to ``<task>/``) -> rows in the file's order; ``None`` without
    the file. A malformed line or a listed file that does not exist is a layout error."""
    f = task_root / LIST_FILES[split]
    if not f.is_file():
        return None
    rows = []
    for line, text in enumerate(f.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetLayoutError(f"{f}:{line}: expected '<path> <label index>', got {text!r}")
        p = task_root / parts[0]
        if not p.is_file():
            raise DatasetLayoutError(f"{f}:{line}: {parts[0]} does not exist under {task_root}")
        rows.append((relative_id(p, task_root), parts[1], p))
    return rows


def _class_index(names: Sequence[str]) -> dict[str, int]:
    """Sorted class names -> indices (integers sort numerically)."""
    uniq = set(names)
    key = (lambda s: (0, int(s), s)) if all(n.lstrip("-").isdigit() for n in uniq) else None
    return {n: i for i, n in enumerate(sorted(uniq, key=key))}


# --------------------------------------------------------------------------- torchvision


class TorchvisionReader:
    """Decodes a torchvision sample by id ``<split-key>/<index>`` (picklable for workers)."""

    def __init__(self, datasets: dict[str, Any]) -> None:
        self.datasets = datasets

    def __call__(self, sample: Sample) -> Any:
        key, _, i = sample.sample_id.rpartition("/")
        return self.datasets[key][int(i)][0]


def _targets(ds: Any) -> list[int]:
    """A torchvision dataset's labels without decoding images where it keeps them."""
    for attr in ("targets", "labels", "_labels", "y"):
        v = getattr(ds, attr, None)
        if v is not None and len(v) == len(ds):
            return [int(x) for x in np.asarray(v).reshape(-1)]
    return [int(ds[i][1]) for i in range(len(ds))]


def _tv_classes(ds: Any, labels: Sequence[int]) -> list[str]:
    """Class names of the labels (the dataset's ``classes`` when it has them)."""
    classes = getattr(ds, "classes", None) or getattr(ds, "categories", None)
    if classes and max(labels, default=-1) < len(classes):
        return [str(classes[i]) for i in labels]
    return [str(i) for i in labels]


def _open_torchvision(task: TransferTask, root: Path, download: bool = False) -> dict[str, Any]:
    """The task's torchvision datasets, keyed ``pool<i>`` / ``test<i>``; raises
    :class:`DatasetLayoutError` when they are not there (torchvision's own message)."""
    import torchvision.datasets as tvd

    src = task.torchvision
    assert src is not None
    cls = getattr(tvd, src.cls)
    out = {}
    for prefix, kwargs in (("pool", src.pool), ("test", src.test)):
        for i, kw in enumerate(kwargs):
            try:
                out[f"{prefix}{i}"] = cls(str(root), download=download, **src.extra, **kw)
            except (RuntimeError, OSError, ImportError, ValueError) as e:
                msg = " ".join(str(e).split()) or type(e).__name__
                raise DatasetLayoutError(f"{task.name}: torchvision {src.cls}: {msg}") from e
    return out


def _torchvision_splits(
    task: TransferTask, root: Path
) -> tuple[dict[str, list[tuple[str, str]]], TorchvisionReader]:
    """(pool / test -> (sample id, class name) rows, the reader of their images)."""
    datasets = _open_torchvision(task, root)
    rows: dict[str, list[tuple[str, str]]] = {"pool": [], "test": []}
    for key, ds in datasets.items():
        names = _tv_classes(ds, _targets(ds))
        rows[key.rstrip("0123456789")] += [(f"{key}/{i}", n) for i, n in enumerate(names)]
    return rows, TorchvisionReader(datasets)


# --------------------------------------------------------------------------- a task on disk


@dataclass(frozen=True)
class TaskData:
    """A task found on disk, split by a protocol: ``splits`` maps train / val / test to a
    :class:`FoundDataset` (labels: indices into ``classes``)."""

    task: TransferTask
    root: Path
    source: str  # 'lists', 'folders', 'csv' or 'torchvision'
    protocol: SplitProtocol
    classes: tuple[str, ...]
    splits: dict[str, FoundDataset]
    split_rule: str = "seeded"  # 'fixed' (the layout's own first rows) or 'seeded'

    def fingerprint(self) -> str:
        """What was evaluated: the three splits' fingerprints."""
        return "-".join(self.splits[s].fingerprint()[:12] for s in SPLITS)


def task_root(task: TransferTask, data_root: Path, override: Path | None = None) -> Path:
    """``<data-root>/vtab/<task>`` (or ``override``)."""
    return override if override is not None else data_root / SUBDIR / task.name


def layout_text(task: TransferTask) -> str:
    """The accepted layouts in words."""
    tv = f", or torchvision {task.torchvision.cls}'s own layout" if task.torchvision else ""
    return (
        f"{SUBDIR}/{task.name}/{{train800,val200,test}}.txt (VTAB-1k lists: path label), or "
        f"{SUBDIR}/{task.name}/{{train,val,test}}/<class>/*.png, or "
        f"{SUBDIR}/{task.name}/{{train,val,test}}.csv (path,label){tv}"
    )


def _spec(task: TransferTask, split: str) -> DatasetSpec:
    layout = Layout(f"{SUBDIR}/{task.name}", layout_text(task), lambda _r: [])
    return DatasetSpec(f"{task.stored}/{split}", f"{task.label} ({split})", layout, task.how_to_get)


def _raw(task: TransferTask, root: Path) -> tuple[str, dict[str, list[tuple[str, str]]], Any]:
    """(source, split -> (sample id, class) rows with 'pool' and 'test' — and, for a layout
    with its own order (lists, CSV), 'train' and 'val' as given —, reader or paths)."""
    readers = (("lists", read_list_split), ("folders", read_folder_split), ("csv", read_csv_split))
    for source, read in readers:
        found = {s: read(root, s) for s in SPLITS}
        if found["train"] is not None or found["test"] is not None:
            if found["train"] is None or found["test"] is None:
                raise DatasetLayoutError(
                    f"{task.name}: {root} has a {source} layout without both train and test"
                )
            pool = found["train"] + (found["val"] or [])
            rows = {
                "pool": [(i, c) for i, c, _ in pool],
                "test": [(i, c) for i, c, _ in found["test"]],
            }
            if source != "folders" and found["val"]:
                rows["train"] = [(i, c) for i, c, _ in found["train"]]
                rows["val"] = [(i, c) for i, c, _ in found["val"]]
            paths = {i: p for r in found.values() if r for i, _, p in r}
            return source, rows, paths
    if task.torchvision is None:
        raise DatasetLayoutError(
            f"{task.name}: {root} has neither {SUBDIR}/{task.name}/train/ nor train.csv"
        )
    rows, reader = _torchvision_splits(task, root)
    return "torchvision", rows, reader


def _in_vtab_order(
    first: Sequence[tuple[str, str]], rows: dict[str, list[tuple[str, str]]]
) -> bool:
    """True when a layout's first train rows look like VTAB's record order (a shuffle):
    they cover at least half of the pool's classes. A class-sorted export does not, and is
    split by the seeded draw instead."""
    pool = {c for _, c in rows["pool"]}
    return len({c for _, c in first}) * 2 >= len(pool)


def load_task(
    task: TransferTask,
    data_root: Path,
    protocol: SplitProtocol,
    override: Path | None = None,
    limit: int | None = None,
) -> TaskData | None:
    """Find ``task`` and split it by ``protocol``; ``None`` when its folder is absent.
    ``limit`` caps the test split (smoke runs). Raises :class:`DatasetLayoutError` on a
    folder that is there but unusable."""
    root = task_root(task, data_root, override)
    if not root.is_dir():
        return None
    source, rows, reader_or_paths = _raw(task, root)
    if not rows["test"]:
        pool_pos, test_pos = protocol.split_test(len(rows["pool"]))
        rows = {
            "pool": [rows["pool"][i] for i in pool_pos],
            "test": [rows["pool"][i] for i in test_pos],
        }
    classes = _class_index([c for r in rows.values() for _, c in r])
    if len(rows["pool"]) < 2 or not rows["test"]:
        raise DatasetLayoutError(f"{task.name}: too few images in {root}")
    test = rows["test"][:limit] if limit else rows["test"]
    ordered = "val" in rows and protocol.train is not None
    if ordered and protocol.fixed and not _in_vtab_order(rows["train"][: protocol.train], rows):
        ordered = False  # e.g. a CSV written class by class: its first rows are not a sample
    if protocol.fixed and ordered and protocol.train is not None:
        rule = "fixed"
        chosen = {
            "train": rows["train"][: protocol.train],
            "val": rows["val"][: protocol.val],
            "test": test,
        }
    else:
        rule = "seeded"
        train_pos, val_pos = protocol.split_pool(len(rows["pool"]))
        chosen = {
            "train": [rows["pool"][i] for i in train_pos],
            "val": [rows["pool"][i] for i in val_pos],
            "test": test,
        }
    reader = reader_or_paths if isinstance(reader_or_paths, TorchvisionReader) else None
    splits = {}
    for split, items in chosen.items():
        samples = [
            Sample(root if reader else reader_or_paths[sid], sid, classes[c]) for sid, c in items
        ]
        splits[split] = FoundDataset(_spec(task, split), root, samples, reader)
    return TaskData(task, root, source, protocol, tuple(classes), splits, rule)


def download_task(task: TransferTask, data_root: Path, log: Log = print) -> Path:
    """Fetch ``task`` with torchvision's verified download into ``<data-root>/vtab/<task>``;
    a task torchvision does not have fails with how to get it."""
    if task.torchvision is None:
        raise DatasetLayoutError(f"{task.name} cannot be downloaded automatically: {_TFDS}")
    root = task_root(task, data_root)
    log(f"{task.name}: downloading with torchvision {task.torchvision.cls} into {root}")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        _open_torchvision(task, root, download=True)
    except DatasetLayoutError as e:
        if created and not any(root.iterdir()):
            root.rmdir()  # an empty folder would read as a bad layout
        raise DatasetLayoutError(
            f"{e} (offline? fetch it where there is a network and copy {root} here, or use "
            "the folder / CSV layout)"
        ) from e
    return root


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class TaskStatus:
    """One task as found (or not) under a data root, with its split sizes (VTAB-1k)."""

    task: TransferTask
    root: Path
    status: str  # 'found (<source>)', 'missing' or 'bad layout: ...'
    sizes: dict[str, int]


def task_statuses(data_root: Path, overrides: dict[str, Path] | None = None) -> list[TaskStatus]:
    """Every transfer task: where it is expected, whether it is there, its split sizes."""
    out = []
    protocol = SPLIT_PROTOCOLS.get("vtab-1k")
    for _, task in TASKS.items():
        root = task_root(task, data_root, (overrides or {}).get(task.name))
        try:
            td = load_task(task, data_root, protocol, (overrides or {}).get(task.name))
        except (DatasetLayoutError, OSError, ValueError) as e:
            out.append(TaskStatus(task, root, f"bad layout: {e}", {}))
            continue
        if td is None:
            out.append(TaskStatus(task, root, "missing", {}))
        else:
            sizes = {s: len(d.samples) for s, d in td.splits.items()}
            out.append(TaskStatus(task, root, f"found ({td.source}, {td.split_rule})", sizes))
    return out


def format_task_list(statuses: Sequence[TaskStatus]) -> str:
    """A plain-text table of the transfer tasks and how to get each."""
    rows = [("task", "group", "status", "train/val/test", "folder")]
    for s in statuses:
        sizes = "/".join(str(s.sizes.get(k, 0)) for k in SPLITS) if s.sizes else "-"
        status = "bad layout" if s.status.startswith("bad") else s.status
        rows.append((s.task.name, s.task.group, status, sizes, str(s.root)))
    lines = aligned_rows(rows)
    lines += [
        "",
        "transfer tasks (--transfer; splits: VTAB-1k, 800 train + 200 val: fixed = the "
        "layout's own first rows (lists, CSV with val.csv), seeded = drawn with seed 0):",
    ]
    for s in statuses:
        lines.append(f"{s.task.name} ({s.task.label}, {s.task.group})")
        lines.append(f"  layout: {layout_text(s.task)}")
        if s.status.startswith("bad"):
            lines.append(f"  problem: {s.status[len('bad layout: ') :]}")
        lines.append(f"  get it: {s.task.how_to_get.replace('<task>', s.task.name)}")
    return "\n".join(lines)
