"""The evaluation notebook and the report module behind it.

The notebook runs headless, in a real Jupyter kernel, against the tiny model that the session
trained into a temporary MLflow store, so that it never rots: every cell must run and the
figures, tables and images a dermatologist reads must be there. The ordering of the worst
mistakes is checked on a hand-made table whose right answer can be read off by eye.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pandas as pd
import pytest

from models.network import CLASSES
from serving.settings import PROJECT_ROOT
from tests.conftest import TinyRun
from training.report import (
    VersionEvaluation,
    headline_table,
    load_version_evaluation,
    mistakes_figure,
    subgroup_report,
    worst_mistakes,
)
from training.tracking import load_split

NOTEBOOK = PROJECT_ROOT / "notebooks" / "01-model-evaluation.ipynb"
VERSION_URI = "models:/dermtriage-classifier/1"


def _cases(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """A cases table from ``(image_id, dx, predicted, p_malignant)`` rows."""
    return pd.DataFrame(rows, columns=["image_id", "dx", "predicted", "p_malignant"])


class TestWorstMistakes:
    def test_missed_cancers_come_first_lowest_score_first_then_benign_highest_score_first(
        self,
    ) -> None:
        cases = _cases(
            [
                ("benign_high", "nv", "mel", 0.90),
                ("mel_caught", "mel", "mel", 0.95),  # right: not a mistake
                ("mel_missed_low", "mel", "nv", 0.05),
                ("bkl_wrong_type", "bkl", "nv", 0.20),
                ("bcc_missed_mid", "bcc", "bkl", 0.40),
                ("nv_right", "nv", "nv", 0.99),  # right, even with a high score
                ("akiec_wrong_type", "akiec", "bcc", 0.70),
                ("df_flagged", "df", "bcc", 0.60),
            ]
        )
        mistakes = worst_mistakes(cases, n=10)
        assert list(mistakes["image_id"]) == [
            "mel_missed_low",
            "bcc_missed_mid",
            "akiec_wrong_type",
            "benign_high",
            "df_flagged",
            "bkl_wrong_type",
        ]
        assert list(mistakes["kind"]) == [
            "missed malignant lesion",
            "missed malignant lesion",
            "malignant, wrong type",
            "benign lesion called malignant",
            "benign lesion called malignant",
            "benign, wrong type",
        ]

    def test_n_keeps_the_worst_and_ties_follow_image_id(self) -> None:
        cases = _cases(
            [
                ("b", "mel", "nv", 0.10),
                ("a", "mel", "nv", 0.10),
                ("c", "nv", "mel", 0.99),
            ]
        )
        assert list(worst_mistakes(cases, n=2)["image_id"]) == ["a", "b"]
        assert worst_mistakes(cases, n=0).empty

    def test_no_mistake_gives_an_empty_table_and_a_figure_that_says_so(self) -> None:
        cases = _cases([("a", "nv", "nv", 0.01), ("b", "mel", "mel", 0.9)])
        cases["image_path"] = "unused.jpg"
        assert worst_mistakes(cases).empty
        figure = mistakes_figure(cases)
        texts = [t.get_text() for ax in figure.axes for t in ax.texts]
        assert texts == ["No wrong decision on this test split"]

    def test_the_figure_shows_each_mistake_image_with_truth_score_and_decision(
        self, derm_images: list[Path]
    ) -> None:
        cases = _cases(
            [
                (derm_images[0].stem, "mel", "nv", 0.12),
                (derm_images[1].stem, "nv", "bcc", 0.81),
                (derm_images[2].stem, "nv", "nv", 0.02),
            ]
        )
        cases["image_path"] = [str(p) for p in derm_images[:3]]
        figure = mistakes_figure(cases, n=8, columns=4)
        shown = [ax for ax in figure.axes if ax.images]
        assert len(shown) == 2
        assert shown[0].images[0].get_array().shape == (224, 224, 3)
        assert "true mel, called nv" in shown[0].get_title()
        assert "p(malignant) 0.12" in shown[0].get_title()
        assert "true nv, called bcc" in shown[1].get_title()


@pytest.fixture(scope="module")
def evaluation(tiny_run: TinyRun) -> VersionEvaluation:
    return load_version_evaluation(
        VERSION_URI,
        tracking_uri=tiny_run.tracking_uri,
        dataset_dir=tiny_run.dataset_dir,
        device="cpu",
    )


class TestVersionEvaluation:
    def test_it_scores_exactly_the_versions_own_test_split(
        self, evaluation: VersionEvaluation, tiny_run: TinyRun
    ) -> None:
        split = load_split(tiny_run.result.run_id, tiny_run.tracking_uri)
        test_ids = sorted(split.loc[split["split"] == "test", "image_id"])
        assert list(evaluation.cases["image_id"]) == test_ids
        assert np.allclose(evaluation.probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert set(evaluation.cases["predicted"]) <= set(CLASSES)
        assert evaluation.figures["n"] == len(test_ids)
        assert {"age", "sex", "localization", "dx_type", "age_band"} <= set(evaluation.cases)

    def test_the_version_card_says_who_when_which_code_and_which_data(
        self, evaluation: VersionEvaluation, tiny_run: TinyRun
    ) -> None:
        info = evaluation.info
        run = tiny_run.result.run_id
        assert (info.model_name, info.version, info.run_id) == ("dermtriage-classifier", "1", run)
        assert info.trained_by == "test-data-scientist"
        assert info.git_commit and info.git_commit != "unknown"
        assert info.dataset == f"derm-dev ({tiny_run.dataset_dir})"
        assert info.dataset_digest
        assert info.training_params["image_size"] == "64"
        card = dict(zip(info.card()["item"], info.card()["value"], strict=True))
        assert card["model"] == "dermtriage-classifier version 1"
        assert card["data set digest"] == info.dataset_digest

    def test_tables_explain_every_figure_and_flag_small_subgroups(
        self, evaluation: VersionEvaluation
    ) -> None:
        headline = headline_table(evaluation)
        assert headline["figure"].iloc[0] == "malignant_auroc"
        assert headline["meaning"].str.len().min() > 20
        subgroups = subgroup_report(evaluation)
        assert subgroups.iloc[0]["group"] == "whole test split"
        # The tiny split has a few dozen images at most: every subgroup is too small to trust.
        small = subgroups[subgroups["n"] < 30]
        assert not small.empty
        assert small["warning"].str.contains("too few").all()


def _outputs_of(nb: nbformat.NotebookNode, snippet: str) -> list[nbformat.NotebookNode]:
    """The outputs of the one code cell whose source contains ``snippet``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and snippet in c.source]
    assert len(cells) == 1, f"expected one cell containing {snippet!r}"
    return cells[0].outputs


def _has(outputs: list[nbformat.NotebookNode], mime: str) -> bool:
    return any(mime in out.get("data", {}) for out in outputs)


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert NOTEBOOK.stat().st_size < 30_000


@pytest.mark.slow
def test_the_notebook_runs_headless_on_the_tiny_model(
    tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERMTRIAGE_NOTEBOOK_MODEL_URI", VERSION_URI)
    monkeypatch.setenv("DERMTRIAGE_NOTEBOOK_TRACKING_URI", tiny_run.tracking_uri)
    monkeypatch.setenv("DERMTRIAGE_NOTEBOOK_DATASET_DIR", str(tiny_run.dataset_dir))
    monkeypatch.setenv("DERMTRIAGE_NOTEBOOK_DEVICE", "cpu")
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(tmp_path / "data"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for reading a failure

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    # The kernel is this virtualenv's, so the notebook saw the code under test.
    assert nb.cells[-1].outputs[0].text.strip() == sys.executable
    for figure in ('figures["confusion_matrix"]', 'figures["roc"]', 'figures["calibration"]'):
        assert _has(_outputs_of(nb, figure), "image/png"), figure
    assert _has(_outputs_of(nb, "report.mistakes_figure(evaluation)"), "image/png")

    card = _outputs_of(nb, "evaluation.info.card()")[0].data["text/html"]
    assert "dermtriage-classifier version 1" in card
    assert "test-data-scientist" in card
    headline = _outputs_of(nb, "report.headline_table(evaluation)")[0].data["text/html"]
    assert "malignant_auroc" in headline and "sens_at_95_spec" in headline
    subgroups = _outputs_of(nb, "report.subgroup_report(evaluation)")[0].data["text/html"]
    for text in ("whole test split", "age (years)", "body site", "warning", "too few"):
        assert text in subgroups, text
    assert _has(_outputs_of(nb, "report.worst_mistakes(evaluation)"), "text/html")
