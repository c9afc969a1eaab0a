"""A dermatologist-readable evaluation report of one registered classifier version.

``notebooks/01-model-evaluation.ipynb`` is the reader's view; every number, table and picture it
shows is made here, so the notebook holds no logic and a test can check the parts one by one.

The report re-scores the version's *own* held-out test split (read back from its MLflow run)
through :class:`models.engine.InferenceEngine`, the code path that scores live cases, rather than
trusting the CSV the training run wrote: what the report shows is what the deployed model does.
It also gathers from the registry who trained the version, when, from which code and data, and
every promotion or rollback that concerned it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from models.engine import EngineConfig, InferenceEngine
from models.network import CLASSES, MALIGNANT_CLASSES
from models.predictor import Predictor, resolve_model_version
from training import metrics, plots
from training.data import load_metadata
from training.evaluate import predict_frame
from training.registry import open_client, show_version
from training.tracking import load_split

logger = logging.getLogger(__name__)

DIAGNOSIS_NAMES: dict[str, str] = {
    "akiec": "actinic keratosis / intraepithelial carcinoma",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic naevus",
    "vasc": "vascular lesion",
}

# Plain-language meaning of each headline figure, in the order the report lists them.
HEADLINE_MEANINGS: dict[str, str] = {
    "malignant_auroc": (
        "Chance that a randomly chosen malignant lesion gets a higher malignancy score than a "
        "randomly chosen benign one. 0.5 is a coin toss, 1.0 a perfect ordering of the worklist."
    ),
    "sens_at_95_spec": (
        "Share of malignant lesions flagged when at most 5% of benign lesions may be flagged."
    ),
    "spec_at_95_sens": (
        "Share of benign lesions kept off the urgent list when at least 95% of malignant "
        "lesions must be flagged."
    ),
    "balanced_accuracy": (
        "Share of lesions given the right diagnosis, averaged over the seven diagnoses so that "
        "a rare diagnosis counts as much as the common naevus."
    ),
    "ece_malignant": (
        "Average gap between the announced malignancy probability and what was observed. "
        "0 means a score of 30% turns out malignant 30% of the time."
    ),
}

SUBGROUP_LABELS: dict[str, str] = {
    "overall": "whole test split",
    "sex": "sex",
    "age_band": "age (years)",
    "localization": "body site",
    "dx_type": "how the diagnosis was confirmed",
}

MISTAKE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "dx",
    "predicted",
    "p_malignant",
    "kind",
    "age",
    "sex",
    "localization",
    "dx_type",
)


@dataclass(frozen=True)
class VersionInfo:
    """Who made a registered version, when, from which code and data, and what happened to it.

    ``history`` holds the registry's promotion records (as dicts, oldest first) that name this
    version as the one promoted, refused, rolled back to or replaced.
    """

    model_name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    trained_by: str | None
    trained_at: str | None
    registered_at: str | None
    git_commit: str | None
    dataset: str | None
    dataset_digest: str | None
    training_params: dict[str, str]
    history: tuple[dict[str, Any], ...]
    held_out_sources: dict[str, dict[str, float]] = field(default_factory=dict)

    def card(self) -> pd.DataFrame:
        """The version card: one ``item, value`` row per fact, for a reader to scan."""
        params = ", ".join(f"{k} {v}" for k, v in self.training_params.items())
        rows = [
            ("model", f"{self.model_name} version {self.version}"),
            ("aliases now", ", ".join(self.aliases) or "none (not in service)"),
            ("trained by", self.trained_by or "unknown"),
            ("training started", self.trained_at or "unknown"),
            ("registered", self.registered_at or "unknown"),
            ("code (git commit)", self.git_commit or "unknown"),
            ("data set", self.dataset or "unknown"),
            ("data set digest", self.dataset_digest or "unknown"),
            ("training settings", params or "unknown"),
            ("MLflow run", self.run_id),
        ]
        return pd.DataFrame(rows, columns=["item", "value"])

    def held_out_sources_table(self) -> pd.DataFrame:
        """Leave-one-source-out figures of the version's recipe (``dermtriage evaluate-sources``):
        each clinic or device trained without and tested on, worst first. Empty when the
        version was registered without them."""
        columns = [
            "source",
            "malignant_auroc",
            "balanced_accuracy",
            "sens_at_95_spec",
            "n",
            "n_malignant",
        ]
        rows = [{"source": s, **f} for s, f in self.held_out_sources.items()]
        table = pd.DataFrame(rows, columns=columns)
        return table.sort_values("malignant_auroc").reset_index(drop=True)

    def history_table(self) -> pd.DataFrame:
        """Promotions, refusals and rollbacks concerning this version: when, what, who and why."""
        columns = ["at", "action", "version", "previous_champion", "user", "reason"]
        return pd.DataFrame([{c: r.get(c) for c in columns} for r in self.history], columns=columns)


@dataclass(frozen=True)
class VersionEvaluation:
    """One registered version scored on its own test split.

    ``cases`` has one row per test image: the data set's metadata (``image_id``, ``lesion_id``,
    ``dx``, ``label``, ``age``, ``sex``, ``localization``, ``dx_type``, ``image_path``) plus
    ``age_band``, the calibrated ``p_<class>`` probabilities, ``p_malignant``, ``malignant``
    (0/1 truth) and ``predicted`` (the class the product decides). ``figures`` are the headline
    numbers of :func:`training.metrics.evaluate_predictions`; ``subgroups`` is
    :func:`training.metrics.subgroup_table` on the same cases.
    """

    model_uri: str
    info: VersionInfo
    cases: pd.DataFrame
    figures: dict[str, float]
    subgroups: pd.DataFrame

    @property
    def probabilities(self) -> np.ndarray:
        """The (N, C) calibrated probabilities, columns in ``models.network.CLASSES`` order."""
        return self.cases[[f"p_{c}" for c in CLASSES]].to_numpy(dtype=np.float64)

    @property
    def decisions(self) -> np.ndarray:
        """The decided class of each case, as indices into ``CLASSES``."""
        return self.cases["predicted"].map(CLASSES.index).to_numpy(dtype=np.int64)


def _source_location(source: str | None) -> str:
    """Where a logged data set came from: MLflow stores the source as JSON (``{"uri": ...}``)."""
    try:
        parsed = json.loads(source or "")
    except json.JSONDecodeError:
        return source or "unknown"
    return str(parsed.get("uri", source)) if isinstance(parsed, dict) else str(source)


def _version_info(tracking_uri: str, name: str, version: str) -> VersionInfo:
    details = show_version(open_client(tracking_uri), name, version)
    run = details.get("run") or {}
    if not details.get("run_id") or "error" in run:
        raise ValueError(f"{name} version {version} has no readable training run; no test split")
    datasets = run.get("datasets") or []
    # Over several folders each is logged on its own plus their union (named a+b), listed last.
    dataset = datasets[-1] if datasets else {}
    params = run.get("params", {})
    wanted = ("backbone", "image_size", "epochs", "seed", "limit_images")
    return VersionInfo(
        model_name=name,
        version=str(version),
        aliases=tuple(details["aliases"]),
        run_id=details["run_id"],
        trained_by=details.get("trained_by") or run.get("user"),
        trained_at=run.get("started"),
        registered_at=details.get("created"),
        git_commit=run.get("git_commit"),
        dataset=(f"{dataset['name']} ({_source_location(dataset['source'])})" if dataset else None),
        dataset_digest=dataset.get("digest") if dataset else None,
        training_params={k: params[k] for k in wanted if params.get(k) not in (None, "None")},
        history=tuple(details["history"]),
        held_out_sources=_held_out_sources(details.get("metrics", {})),
    )


def _held_out_sources(figures: dict[str, float]) -> dict[str, dict[str, float]]:
    """The version's ``source.<name>.<figure>`` metrics, regrouped by source."""
    found: dict[str, dict[str, float]] = {}
    for key, value in figures.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "source":
            found.setdefault(parts[1], {})[parts[2]] = float(value)
    return found


def _score_cases(
    model_uri: str, tracking_uri: str, cases: pd.DataFrame, device: str
) -> tuple[np.ndarray, np.ndarray]:
    predictor = Predictor.load(model_uri, tracking_uri=tracking_uri, device="cpu")
    engine = InferenceEngine(predictor, EngineConfig(device=device))
    try:
        return predict_frame(engine, cases)
    finally:
        engine.close()


def load_version_evaluation(
    model_uri: str, *, tracking_uri: str, dataset_dir: Path, device: str = "auto"
) -> VersionEvaluation:
    """Score the registered version ``model_uri`` on its own test split and gather its story.

    ``model_uri`` is ``models:/<name>/<version>`` or ``models:/<name>@<alias>``; an alias is
    resolved once, at the start, so every part of the report describes the same version even if
    the alias moves meanwhile. The test images are read from ``dataset_dir``, which must hold the
    data set the version was trained on.
    """
    ref = model_uri.removeprefix("models:/")
    if not model_uri.startswith("models:/") or ("/" not in ref and "@" not in ref):
        raise ValueError(f"{model_uri!r} is not a registered version (models:/name/N or @alias)")
    name, version = resolve_model_version(model_uri, tracking_uri).split("/", 1)
    info = _version_info(tracking_uri, name, version)

    split = load_split(info.run_id, tracking_uri)
    test_ids = split.loc[split["split"] == "test", ["image_id"]]
    cases = load_metadata(dataset_dir).merge(test_ids, on="image_id")
    if cases.empty:
        raise ValueError(f"run {info.run_id} has no test images in {dataset_dir}")
    cases = cases.sort_values("image_id").reset_index(drop=True)
    probs, decided = _score_cases(f"models:/{name}/{version}", tracking_uri, cases, device)

    labels = cases["label"].to_numpy()
    y_malignant, p_malignant = metrics.malignant_scores(labels, probs)
    cases[[f"p_{c}" for c in CLASSES]] = probs
    cases["p_malignant"] = p_malignant
    cases["malignant"] = y_malignant
    cases["predicted"] = [CLASSES[i] for i in decided]
    cases["age_band"] = cases["age"].map(metrics.age_band)
    figures = metrics.evaluate_predictions(labels, probs, CLASSES, predicted=decided)
    columns = (*metrics.DEFAULT_SUBGROUP_COLUMNS, *(["dataset"] if "dataset" in cases else []))
    subgroups = metrics.subgroup_table(
        labels, probs, cases, CLASSES, predicted=decided, columns=columns
    )
    logger.info(
        "%s version %s on %d test images: AUROC %.3f",
        name,
        version,
        len(cases),
        figures["malignant_auroc"],
    )
    return VersionEvaluation(model_uri, info, cases, figures, subgroups)


def headline_table(evaluation: VersionEvaluation) -> pd.DataFrame:
    """The headline figures with what each means, then the recall of every diagnosis.

    Columns ``figure``, ``value`` (rounded to 3 decimals; NaN when the split cannot define it)
    and ``meaning``.
    """
    figures = evaluation.figures
    rows = [(key, figures[key], meaning) for key, meaning in HEADLINE_MEANINGS.items()]
    for code in CLASSES:
        rows.append(
            (
                f"recall_{code}",
                figures[f"recall_{code}"],
                f"Share of {DIAGNOSIS_NAMES[code]} lesions ({code}) given this diagnosis.",
            )
        )
    rows.append(("n", figures["n"], "Test images (lesions never seen in training)."))
    rows.append(("n_malignant", figures["n_malignant"], "Of which malignant (mel, bcc, akiec)."))
    table = pd.DataFrame(rows, columns=["figure", "value", "meaning"])
    table["value"] = table["value"].astype(float).round(3)
    return table


def plot_figures(evaluation: VersionEvaluation) -> dict[str, Figure]:
    """ROC, reliability diagram and confusion matrix of the evaluation (``plots`` keys)."""
    cases = evaluation.cases
    y_malignant = cases["malignant"].to_numpy()
    p_malignant = cases["p_malignant"].to_numpy()
    return {
        "roc": plots.roc_figure(y_malignant, p_malignant),
        "calibration": plots.calibration_figure(y_malignant, p_malignant),
        "confusion_matrix": plots.confusion_figure(
            cases["label"].to_numpy(), evaluation.decisions, CLASSES
        ),
    }


def _subgroup_note(row: pd.Series) -> str:
    notes = []
    if row["small_sample"]:
        notes.append(f"only {row['n']} images: too few to read much into")
    if row["n_malignant"] == 0:
        notes.append("no malignant lesion: malignancy figures undefined")
    elif math.isnan(row["malignant_auroc"]):
        notes.append("no benign lesion: malignancy figures undefined")
    return "; ".join(notes)


def subgroup_report(evaluation: VersionEvaluation) -> pd.DataFrame:
    """The subgroup table in plain words, with a ``warning`` on every row not to over-read.

    Same rows as :func:`training.metrics.subgroup_table` (the whole split first); the group
    column is renamed for a clinician, figures are rounded, and ``warning`` says when a subgroup
    is too small (under 30 images) or lacks malignant or benign lesions.
    """
    table = evaluation.subgroups.copy()
    table["warning"] = table.apply(_subgroup_note, axis=1)
    table["group"] = table["column"].map(SUBGROUP_LABELS).fillna(table["column"])
    figures = list(metrics.SUBGROUP_METRICS)
    table[figures] = table[figures].astype(float).round(3)
    return table[["group", "value", "n", "n_malignant", *figures, "warning"]]


def _mistake_kind(dx: str, predicted: str) -> str:
    truly, called = dx in MALIGNANT_CLASSES, predicted in MALIGNANT_CLASSES
    if truly and not called:
        return "missed malignant lesion"
    if truly:
        return "malignant, wrong type"
    if called:
        return "benign lesion called malignant"
    return "benign, wrong type"


def worst_mistakes(evaluation: VersionEvaluation | pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """The ``n`` clinically worst wrong decisions, worst first.

    A mistake is a case whose decided class differs from the true diagnosis. Malignant lesions
    come first, lowest ``p_malignant`` first (a missed cancer sits at the bottom of the worklist),
    then benign lesions, highest ``p_malignant`` first (needless urgent reviews). Ties keep
    ``image_id`` order. Accepts an evaluation or its ``cases`` frame (which needs ``image_id``,
    ``dx``, ``predicted`` and ``p_malignant``); returns those columns of :data:`MISTAKE_COLUMNS`
    that the cases have, with ``kind`` added.
    """
    if n < 0:
        raise ValueError("n cannot be negative")
    cases = evaluation.cases if isinstance(evaluation, VersionEvaluation) else evaluation
    wrong = cases[cases["dx"] != cases["predicted"]].copy()
    malignant = wrong["dx"].isin(MALIGNANT_CLASSES)
    # Sort key: malignant lesions by rising score, then benign by falling score.
    wrong["_group"] = np.where(malignant, 0, 1)
    wrong["_key"] = np.where(malignant, wrong["p_malignant"], -wrong["p_malignant"])
    wrong = wrong.sort_values(["_group", "_key", "image_id"], kind="mergesort").head(n)
    pairs = zip(wrong["dx"], wrong["predicted"], strict=True)
    wrong["kind"] = [_mistake_kind(dx, decided) for dx, decided in pairs]
    wrong["p_malignant"] = wrong["p_malignant"].round(3)
    columns = [c for c in MISTAKE_COLUMNS if c in wrong.columns]
    return wrong[columns].reset_index(drop=True)


def mistakes_figure(
    evaluation: VersionEvaluation | pd.DataFrame, n: int = 8, columns: int = 4
) -> Figure:
    """A grid of the worst mistakes' images, each titled with truth, score and decision.

    Order as :func:`worst_mistakes`; the cases need an ``image_path`` column. With no mistake
    the figure says so instead of showing an empty grid.
    """
    cases = evaluation.cases if isinstance(evaluation, VersionEvaluation) else evaluation
    mistakes = worst_mistakes(cases, n)
    paths = cases.set_index("image_id")["image_path"]
    rows = max(1, math.ceil(len(mistakes) / columns))
    figure = Figure(figsize=(3.0 * columns, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    if mistakes.empty:
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, "No wrong decision on this test split", ha="center", va="center")
        ax.set_axis_off()
        return figure
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (_, case) in zip(axes, mistakes.iterrows(), strict=False):
        with Image.open(paths[case["image_id"]]) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        colour = "tab:red" if case["dx"] in MALIGNANT_CLASSES else "black"
        ax.set_title(
            f"{case['image_id']}\ntrue {case['dx']}, called {case['predicted']}\n"
            f"p(malignant) {case['p_malignant']:.2f}",
            fontsize="small",
            color=colour,
        )
    for ax in axes:
        ax.set_axis_off()
    figure.suptitle("Worst mistakes (red: truly malignant)")
    return figure
