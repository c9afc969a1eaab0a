"""The auditor's dossier of a registered classifier version, read back from the MLflow store.

An auditor must answer, without a data scientist beside them: how good was this version, on which
people was it weaker, on what data and by which code was it trained, who trained it, and who put
it in service, when, why and after which gates. Everything here is *read* from what training and
the registry already recorded (:mod:`training.train`, :mod:`training.tracking`,
:mod:`training.registry`): version tags ``metric.*``, the run's ``evaluation/subgroups.csv``,
plots, ``split/split.csv``, ``mlflow.data`` inputs, the ``git_commit`` tag and the registry's
promotion history. Nothing is recomputed, so the dossier shows what was known at approval.

The caller passes an ``MlflowClient`` (see :func:`training.registry.open_client`).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from training.metrics import SUBGROUP_METRICS
from training.registry import KEY_METRICS, list_versions, show_version
from training.tracking import SPLIT_ARTIFACT

logger = logging.getLogger(__name__)

SUBGROUPS_ARTIFACT = "evaluation/subgroups.csv"
SPLIT_COUNTS_ARTIFACT = "split/counts.json"
#: Where each plot may be found: the training run's own, else the one the reference step drew.
PLOT_ARTIFACTS: dict[str, tuple[str, ...]] = {
    "roc": ("evaluation/roc.png", "governance/roc.png"),
    "calibration": ("evaluation/calibration.png", "governance/calibration.png"),
    "confusion_matrix": ("evaluation/confusion_matrix.png",),
}
#: Subgroups with fewer test images than this carry a warning (same rule as the training report).
SMALL_SAMPLE_N = 30
SUBGROUP_COLUMNS: dict[str, str] = {
    "sex": "sex",
    "age_band": "age band",
    "localization": "body site",
    "dx_type": "how the diagnosis was confirmed",
    "skin_type": "skin type (Fitzpatrick)",
}
SKIN_TYPE_COLUMNS: tuple[str, ...] = ("skin_type", "fitzpatrick")
SKIN_TYPE_NOT_RECORDED = (
    "Skin type was not recorded in the training data (HAM10000 has no Fitzpatrick type), so "
    "performance on darker skin types is unknown."
)


@dataclass(frozen=True)
class TrainingData:
    """What a version learned from: the data set, the split and how many lesions of each kind.

    ``counts`` maps each split (train, val, test) to ``{diagnosis: images}``.
    """

    datasets: tuple[dict[str, Any], ...]
    split_seed: int | None
    counts: dict[str, dict[str, int]]

    @property
    def totals(self) -> dict[str, int]:
        return {split: sum(by_dx.values()) for split, by_dx in self.counts.items()}


@dataclass(frozen=True)
class VersionDossier:
    """Everything the auditor pages and the PDF show about one version, as plain data."""

    model_name: str
    version: str
    aliases: tuple[str, ...]
    created: str | None
    run_id: str | None
    trained_by: str | None
    trained_at: str | None
    git_commit: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    subgroups: tuple[dict[str, Any], ...]
    subgroup_notes: tuple[str, ...]
    plots: dict[str, str]
    training_data: TrainingData
    history: tuple[dict[str, Any], ...]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def headline(self) -> dict[str, float]:
        """The registry's key figures (NaN when not measured), in their usual order."""
        return {key: self.metrics.get(key, math.nan) for key in KEY_METRICS}

    @property
    def in_service_since(self) -> str | None:
        """When this version last became champion (promotion or rollback to it), if ever."""
        moves = [
            r["at"] for r in self.history if r["action"] in ("promote", "rollback")
            and r["version"] == self.version
        ]  # fmt: skip
        return moves[-1] if moves else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        data["training_data"]["totals"] = self.training_data.totals
        data["headline"] = self.headline
        data["in_service_since"] = self.in_service_since
        return _json_safe(data)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None, so the JSON API emits standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _download(client: mlflow.MlflowClient, run_id: str, path: str, dst: Path) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except (MlflowException, OSError) as exc:
        logger.info("run %s has no artefact %s (%s)", run_id, path, exc)
        return None


def artifact_bytes(client: mlflow.MlflowClient, run_id: str, path: str) -> bytes | None:
    """The bytes of one artefact of a run, or None when it was never logged."""
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(client, run_id, path, Path(tmp))
        return local.read_bytes() if local is not None and local.is_file() else None


def _artifact_paths(client: mlflow.MlflowClient, run_id: str, folder: str) -> set[str]:
    try:
        return {a.path for a in client.list_artifacts(run_id, folder)}
    except (MlflowException, OSError):
        return set()


def find_plots(client: mlflow.MlflowClient, run_id: str | None) -> dict[str, str]:
    """``{plot: artefact path}`` for the ROC, calibration and confusion plots that exist."""
    if not run_id:
        return {}
    available = _artifact_paths(client, run_id, "evaluation") | _artifact_paths(
        client, run_id, "governance"
    )
    found = {}
    for plot, candidates in PLOT_ARTIFACTS.items():
        path = next((c for c in candidates if c in available), None)
        if path:
            found[plot] = path
    return found


def subgroup_warning(row: dict[str, Any], small_sample_n: int = SMALL_SAMPLE_N) -> str:
    """Why a subgroup row must not be over-read: too few images, or no malignant/benign case."""
    notes = []
    n = int(row.get("n", 0))
    n_malignant = int(row.get("n_malignant", 0))
    if n < small_sample_n:
        notes.append(f"only {n} images (fewer than {small_sample_n}): too few to read much into")
    if n_malignant == 0:
        notes.append("no malignant lesion: malignancy figures undefined")
    elif n_malignant == n:
        notes.append("no benign lesion: malignancy figures undefined")
    return "; ".join(notes)


def load_subgroups(
    client: mlflow.MlflowClient, run_id: str | None, small_sample_n: int = SMALL_SAMPLE_N
) -> tuple[list[dict[str, Any]], list[str]]:
    """The run's subgroup table as rows with ``group`` and ``warning``, plus table-wide notes.

    Rows keep the training run's figures (``SUBGROUP_METRICS``; None when undefined). The notes
    say what the table cannot show, such as skin type when the data never recorded it.
    """
    notes: list[str] = []
    if not run_id:
        return [], ["No training run: no subgroup results."]
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(client, run_id, SUBGROUPS_ARTIFACT, Path(tmp))
        table = pd.read_csv(local) if local is not None else None
    if table is None:
        return [], ["The training run logged no subgroup table."]
    rows = []
    for record in table.to_dict(orient="records"):
        column = str(record["column"])
        row = {
            "column": column,
            "group": (
                "whole test split" if column == "overall" else SUBGROUP_COLUMNS.get(column, column)
            ),
            "value": str(record["value"]),
            "n": int(record["n"]),
            "n_malignant": int(record["n_malignant"]),
            **{m: _finite_or_none(record.get(m)) for m in SUBGROUP_METRICS},
        }
        row["small_sample"] = row["n"] < small_sample_n
        row["warning"] = subgroup_warning(row, small_sample_n)
        rows.append(row)
    if not any(r["column"] in SKIN_TYPE_COLUMNS for r in rows):
        notes.append(SKIN_TYPE_NOT_RECORDED)
    small = sum(r["small_sample"] for r in rows)
    if small:
        notes.append(
            f"{small} of {len(rows)} rows have fewer than {small_sample_n} images: "
            "their figures are too uncertain to compare."
        )
    return rows, notes


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _source_location(source: str | None) -> str | None:
    """Where a logged data set came from: MLflow stores the source as JSON (``{"uri": ...}``)."""
    try:
        parsed = json.loads(source or "")
    except json.JSONDecodeError:
        return source
    return str(parsed.get("uri", source)) if isinstance(parsed, dict) else source


def load_training_data(
    client: mlflow.MlflowClient, run_id: str | None, run: dict[str, Any] | None
) -> TrainingData:
    """The data sets the run logged, its split seed and images per diagnosis in each split."""
    logged = (run or {}).get("datasets") or ()
    datasets = tuple({**d, "source": _source_location(d.get("source"))} for d in logged)
    seed: int | None = None
    counts: dict[str, dict[str, int]] = {}
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            split_file = _download(client, run_id, SPLIT_ARTIFACT, Path(tmp))
            counts_file = _download(client, run_id, SPLIT_COUNTS_ARTIFACT, Path(tmp))
            if split_file is not None:
                split = pd.read_csv(split_file)
                table = split.groupby(["split", "dx"]).size()
                for (name, dx), n in table.items():
                    counts.setdefault(str(name), {})[str(dx)] = int(n)
            if counts_file is not None:
                seed = json.loads(counts_file.read_text(encoding="utf-8")).get("seed")
    if seed is None:
        param = ((run or {}).get("params") or {}).get("seed")
        seed = int(param) if param not in (None, "None") else None
    order = {"train": 0, "val": 1, "test": 2}
    splits = sorted(counts, key=lambda s: order.get(s, 9))
    counts = {k: dict(sorted(counts[k].items())) for k in splits}
    return TrainingData(datasets=datasets, split_seed=seed, counts=counts)


def version_dossier(
    client: mlflow.MlflowClient, name: str, version: str, small_sample_n: int = SMALL_SAMPLE_N
) -> VersionDossier:
    """Gather the dossier of ``name`` version ``version`` (:class:`RegistryError` if unknown)."""
    details = show_version(client, name, str(version))
    run = details.get("run") or None
    run_id = details.get("run_id")
    if run is not None and "error" in run:
        run = None
    subgroups, notes = load_subgroups(client, run_id, small_sample_n)
    return VersionDossier(
        model_name=name,
        version=str(details["version"]),
        aliases=tuple(details["aliases"]),
        created=details.get("created"),
        run_id=run_id,
        # The training run's own record first: a version registered later by someone else
        # must not read as trained by them.
        trained_by=((run or {}).get("tags") or {}).get("trained_by")
        or details.get("trained_by")
        or (run or {}).get("user"),
        trained_at=(run or {}).get("started"),
        git_commit=(run or {}).get("git_commit") or details["tags"].get("git_commit"),
        params=dict((run or {}).get("params") or {}),
        metrics=dict(details["metrics"]),
        subgroups=tuple(subgroups),
        subgroup_notes=tuple(notes),
        plots=find_plots(client, run_id),
        training_data=load_training_data(client, run_id, run),
        history=tuple(details["history"]),
        tags=dict(details["tags"]),
    )


def versions_overview(client: mlflow.MlflowClient, name: str) -> list[dict[str, Any]]:
    """One row per version, newest first: aliases, key figures, who trained it, when."""
    return [
        _json_safe(
            {
                "version": s.version,
                "aliases": list(s.aliases),
                "created": s.created,
                "trained_by": s.trained_by,
                "run_id": s.run_id,
                "metrics": {k: s.metrics.get(k, math.nan) for k in KEY_METRICS},
            }
        )
        for s in list_versions(client, name)
    ]


@dataclass(frozen=True)
class MetricComparison:
    """One figure of two versions side by side; ``better`` names the better one (or ``equal``)."""

    metric: str
    a: float | None
    b: float | None
    difference: float | None
    better: str


#: Figures where a lower value is better (calibration error).
LOWER_IS_BETTER: frozenset[str] = frozenset({"ece_malignant", "ece_top_label"})


def compare_metrics(a: VersionDossier, b: VersionDossier) -> list[MetricComparison]:
    """The key figures, then every other figure both versions have, as ``b - a``.

    Each version's figures were measured on its own test split when it was registered; promotion
    gates re-measure both on the same split (see :func:`training.registry.promote`).
    """
    keys = list(KEY_METRICS) + sorted((set(a.metrics) & set(b.metrics)) - set(KEY_METRICS))
    rows = []
    for key in keys:
        va, vb = _finite_or_none(a.metrics.get(key)), _finite_or_none(b.metrics.get(key))
        if va is None or vb is None:
            diff, better = None, "unknown"
        else:
            diff = vb - va
            if abs(diff) < 1e-12 or key in ("n", "n_malignant"):
                better = "equal" if abs(diff) < 1e-12 else "-"
            elif (diff > 0) != (key in LOWER_IS_BETTER):
                better = b.version
            else:
                better = a.version
        rows.append(MetricComparison(key, va, vb, diff, better))
    return rows
