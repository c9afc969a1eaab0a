"""Model governance, the whole story an auditor follows, on real models in a real MLflow store.

Two tiny versions of the classifier: version 1 is the tiny training run's shipped folder,
registered and made champion by the bootstrap (as on a fresh installation); version 2 is the same
network recalibrated (a more cautious prior: malignant classes' calibrated log-odds raised by 1.5)
and registered by another data scientist with its own evaluation, subgroups and split. Version 2
then shadows the champion on live cases submitted through the real API and scored by the real
worker (SQLite, photo store, derm-dev photos), is compared, promoted through the gates and rolled
back; every figure and event the auditor pages, JSON API, PDF and audit trail show is checked
against the registry and the scores table.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.engine import EngineConfig, InferenceEngine
from models.network import CLASSES, MALIGNANT_CLASSES
from models.predictor import Predictor
from pipeline.drift import SCORE, Reference
from serving.app import create_app
from serving.cli import main
from serving.db.models import AuditEvent, Score
from serving.settings import Settings, get_settings
from serving.shadow_scoring import ShadowScorer, default_challenger_source
from tests.conftest import TinyRun
from tests.serving.conftest import sign_in
from training import tracking
from training.bootstrap import BOOTSTRAP_USER, register_shipped_model
from training.data import load_metadata
from training.evaluate import predict_frame
from training.export import SPLIT_FILE, load_model_dir
from training.governance import compare_metrics, version_dossier
from training.governance_compare import score_tier
from training.governance_reference import (
    load_reference,
    store_reference,
    write_shipped_reference,
)
from training.metrics import age_band, evaluate_predictions, subgroup_table
from training.registry import (
    open_client,
    register_version,
)

NAME = "dermtriage-classifier"
EXPERIMENT = "governance-test"
SECOND_SCIENTIST = "ds-petit"
AUDITOR, ADMIN, GP, EXPERT = "audit-moreau", "admin", "dr-martin", "dr-bernard"
T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
SKIN_TYPES = ("II", "IV", "VI")  # a Monday: ISO week 2026-W47


@dataclass
class Store:
    tracking_uri: str
    dataset_dir: Path
    recalibrated_run: str


def _register_recalibrated(
    tiny_run: TinyRun, tracking_uri: str, artifact_root: str, malignant_shift: float
) -> str:
    """Version 2: the shipped weights with the malignant classes' calibrated log-odds raised by
    ``malignant_shift`` (the bias is divided by the temperature), logged and registered the way
    a training run does (data set, split, figures, subgroups, model)."""
    model, metadata = load_model_dir(tiny_run.model_dir)
    with torch.no_grad():
        for code in MALIGNANT_CLASSES:
            model.logit_bias[CLASSES.index(code)] += malignant_shift * float(model.temperature)
    split = pd.read_csv(tiny_run.model_dir / SPLIT_FILE)
    seed = int(metadata["config"]["seed"])
    experiment_id = tracking.configure(tracking_uri, EXPERIMENT, artifact_root)
    with mlflow.start_run(run_name="recalibrated", experiment_id=experiment_id) as run:
        mlflow.log_params(metadata["config"])
        mlflow.set_tags({"trained_by": SECOND_SCIENTIST, "git_commit": "recalibration-commit"})
        metadata_frame = load_metadata(tiny_run.dataset_dir).merge(split[["image_id"]])
        tracking.log_dataset(metadata_frame, tiny_run.dataset_dir)
        tracking.log_split(split, seed)
        model_uri = tracking.log_model(
            model,
            int(metadata["image_size"]),
            tracking.model_metadata(int(metadata["image_size"]), metadata["backbone"], {}),
        )
        run_id = run.info.run_id
    # Its figures and subgroups on the test split, scored in memory through the inference
    # engine (the path evaluate_model_uri takes after loading the model from the store).
    cases = metadata_frame.merge(split.loc[split["split"] == "test", ["image_id"]])
    engine = InferenceEngine(
        Predictor(model, image_size=int(metadata["image_size"]), version="candidate"),
        EngineConfig(device="cpu"),
    )
    try:
        probs, decided = predict_frame(engine, cases)
    finally:
        engine.close()
    labels = cases["label"].to_numpy()
    figures = evaluate_predictions(labels, probs, predicted=decided)
    cases["age_band"] = cases["age"].map(age_band)
    table = subgroup_table(labels, probs, cases, predicted=decided)
    with mlflow.start_run(run_id=run_id):
        tracking.log_frame(table, "evaluation/subgroups.csv")
    register_version(
        open_client(tracking_uri),
        NAME,
        model_uri,
        metrics=figures,
        tags={"trained_by": SECOND_SCIENTIST, "run_id": run_id},
    )
    return run_id


@pytest.fixture(scope="module")
def store(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("governance")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    artifact_root = (root / "artifacts").as_uri()
    first = register_shipped_model(
        tiny_run.model_dir,
        tracking_uri=tracking_uri,
        registered_model_name=NAME,
        experiment_name=EXPERIMENT,
        artifact_root=artifact_root,
        dataset_dir=tiny_run.dataset_dir,
    )
    assert first == "1"
    run_id = _register_recalibrated(tiny_run, tracking_uri, artifact_root, malignant_shift=1.5)
    client = open_client(tracking_uri)
    for version in ("1", "2"):
        store_reference(
            client,
            NAME,
            version,
            tracking_uri=tracking_uri,
            dataset_dir=tiny_run.dataset_dir,
            device="cpu",
        )
    return Store(tracking_uri, tiny_run.dataset_dir, run_id)


# --- the registry side: the dossier of each version -------------------------------------------


def test_the_dossier_of_the_bootstrapped_champion(store: Store, tiny_run: TinyRun) -> None:
    client = open_client(store.tracking_uri)
    dossier = version_dossier(client, NAME, "1")
    shipped = json.loads((tiny_run.model_dir / "model.json").read_text())
    assert dossier.aliases == ("champion",)
    assert dossier.trained_by == shipped["trained_by"] == "test-data-scientist"
    assert dossier.git_commit == shipped["git_commit"]
    for key, value in shipped["test_metrics"].items():
        assert dossier.metrics[key] == pytest.approx(value), key
    # Training data: the data set digest logged by mlflow.data, the split's seed and counts.
    (dataset,) = dossier.training_data.datasets
    assert dataset["name"] == "derm-dev" and dataset["digest"]
    assert dossier.training_data.split_seed == shipped["config"]["seed"]
    split = pd.read_csv(tiny_run.model_dir / SPLIT_FILE)
    expected = split.groupby(["split", "dx"]).size()
    for (name, dx), n in expected.items():
        assert dossier.training_data.counts[name][dx] == n
    assert sum(dossier.training_data.totals.values()) == len(split)
    # Subgroups: the shipped table, every tiny subgroup warned about, skin type noted missing.
    shipped_groups = pd.read_csv(tiny_run.model_dir / "subgroups.csv")
    assert len(dossier.subgroups) == len(shipped_groups)
    assert dossier.subgroups[0]["group"] == "whole test split"
    assert all("too few" in row["warning"] for row in dossier.subgroups)  # 84-image run
    assert any("Skin type was not recorded" in note for note in dossier.subgroup_notes)
    # Plots: the bootstrap logged none; the reference step drew ROC and calibration.
    assert dossier.plots == {
        "roc": "governance/roc.png",
        "calibration": "governance/calibration.png",
    }
    # Promotion history: the bootstrap made it the first champion, gates recorded.
    (event,) = dossier.history
    assert event["action"] == "promote" and event["user"] == BOOTSTRAP_USER
    assert event["gates"]["passed"] and event["gates"]["note"] == "first champion"
    assert dossier.in_service_since == event["at"]


def test_the_reference_holds_the_test_split_scores_and_photo_statistics(
    store: Store, tiny_run: TinyRun
) -> None:
    client = open_client(store.tracking_uri)
    reference = load_reference(client, NAME, "1")
    assert reference is not None
    split = pd.read_csv(tiny_run.model_dir / SPLIT_FILE)
    n_test = int((split["split"] == "test").sum())
    assert reference.version == f"{NAME}/1" and reference.n_photos == n_test
    assert len(reference.values[SCORE]) == n_test
    assert all(0.0 <= p <= 1.0 for p in reference.values[SCORE])
    assert set(reference.values["short_side"]) == {224.0}  # derm-dev images are 224 px
    assert all(0.0 < b < 1.0 for b in reference.values["brightness"])
    # The recalibrated version scores the same images higher: its reference differs.
    second = load_reference(client, NAME, "2")
    assert second is not None and second.values[SCORE] != reference.values[SCORE]


def test_a_fresh_installation_reads_the_shipped_reference_until_one_is_stored(
    store: Store, tiny_run: TinyRun, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny_run.model_dir, shipped)
    path = write_shipped_reference(shipped, tiny_run.dataset_dir)
    from_folder = Reference.from_dict(json.loads(path.read_text()))
    # Computed from the folder without MLflow, it is the registry's reference of the same model.
    from_registry = load_reference(open_client(store.tracking_uri), NAME, "1")
    assert from_registry is not None
    assert from_folder.values[SCORE] == pytest.approx(from_registry.values[SCORE], abs=1e-5)
    assert from_folder.values["brightness"] == from_registry.values["brightness"]
    assert from_folder.problem_counts == from_registry.problem_counts
    # A fresh store whose version 1 was registered from that folder falls back on the file.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    register_shipped_model(
        shipped,
        tracking_uri=fresh,
        registered_model_name=NAME,
        experiment_name=EXPERIMENT,
        artifact_root=(tmp_path / "artifacts").as_uri(),
    )
    client = open_client(fresh)
    assert load_reference(client, NAME, "1") is None
    found = load_reference(client, NAME, "1", shipped_dir=shipped)
    assert found is not None and found.version == f"{NAME}/1"
    assert found.values == from_folder.values
    assert load_reference(client, NAME, "1", shipped_dir=tiny_run.model_dir) is None  # no file


def test_comparing_the_two_versions_side_by_side(store: Store) -> None:
    client = open_client(store.tracking_uri)
    first, second = version_dossier(client, NAME, "1"), version_dossier(client, NAME, "2")
    assert second.trained_by == SECOND_SCIENTIST and second.git_commit == "recalibration-commit"
    assert second.aliases == () and second.history == ()
    rows = {row.metric: row for row in compare_metrics(first, second)}
    auroc = rows["malignant_auroc"]
    assert auroc.a == pytest.approx(first.metrics["malignant_auroc"])
    assert auroc.b == pytest.approx(second.metrics["malignant_auroc"])
    assert auroc.difference == pytest.approx(auroc.b - auroc.a)
    ece = rows["ece_malignant"]
    lower = "1" if ece.a < ece.b else "2"
    assert ece.better == (lower if abs(ece.a - ece.b) > 1e-12 else "equal")


# --- the live side: shadow mode on real cases, then promotion and rollback --------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Live:
    client: TestClient
    clock: Clock
    store: Store
    week1_cases: list[int]
    week2_cases: list[int]

    @property
    def runtime(self) -> Any:
        return self.client.app.state.case_runtime  # type: ignore[attr-defined]

    def get(self, url: str, user: str = AUDITOR) -> Any:
        response = self.client.get(url, headers=sign_in(self.client, user))
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
        return response


def _questionnaire(i: int) -> dict[str, Any]:
    return {
        "patient_pseudonym": f"PAT-{i:04d}",
        "age": 40 + i,
        "sex": "female" if i % 2 else "male",
        "fitzpatrick": SKIN_TYPES[i % 3],
        "body_site": "back",
        "duration": "6_12_months",
        "changed_size": False,
        "bleeding": False,
        "clinical_question": "Lésion pigmentée, avis sur la conduite à tenir ?",
    }


def _darkened(path: Path) -> bytes:
    from PIL import Image, ImageEnhance

    with Image.open(path) as image:
        dark = ImageEnhance.Brightness(image.convert("RGB")).enhance(0.35)
        buffer = io.BytesIO()
        dark.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _submit(client: TestClient, i: int, photos: list[bytes]) -> int:
    files = [("photos", (f"p{k}.jpg", data, "image/jpeg")) for k, data in enumerate(photos)]
    response = client.post(
        "/api/v1/cases",
        data={"questionnaire": json.dumps(_questionnaire(i))},
        files=files,
        headers=sign_in(client, GP),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _score_everything(live_client: TestClient) -> None:
    """One pass of the scoring worker (champion), then one shadow pass (challenger)."""
    runtime = live_client.app.state.case_runtime  # type: ignore[attr-defined]
    runtime.worker.run_once()
    shadow = ShadowScorer(
        runtime.database,
        runtime.store,
        default_challenger_source(NAME, runtime.settings.tracking_uri, check_seconds=0.0),
        clock=runtime.clock,
    )
    shadow.run_once()


def _cli(settings: Settings, *argv: str) -> int:
    """``dermtriage ARGV`` with the environment pointing at the service's data and store."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", str(settings.mlflow_tracking_uri))
        patch.setenv("DERMTRIAGE_DATA_DIR", str(settings.data_dir))
        get_settings.cache_clear()
        try:
            return main(list(argv))
        finally:
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def live(
    store: Store, derm_images: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """The service on the governed store; version 2 is made challenger with the CLI and
    shadows version 1 on six live cases: three in ISO week 47 with ordinary photos, three in
    week 48 with darkened ones."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("governance-service"),
        mlflow_tracking_uri=store.tracking_uri,
        database_url=None,
        scoring_worker=False,
        model_check_seconds=0.0,
    )
    app = create_app(settings)
    clock = Clock()
    app.state.clock = clock
    photos = [p.read_bytes() for p in derm_images[:12]]
    with TestClient(app) as client:
        reason = "recalibrated: check it on live cases before promoting"
        assert _cli(settings, "models", "challenger", "2", "--reason", reason,
                    "--user", SECOND_SCIENTIST) == 0  # fmt: skip
        week1 = []
        for i in range(3):
            clock.now = T0 + timedelta(hours=i)
            week1.append(_submit(client, i, photos[2 * i : 2 * i + 2]))
        _score_everything(client)
        week2 = []
        for i in range(3, 6):
            clock.now = T0 + timedelta(days=7, hours=i)
            # Week 1's lesions, darkened: photos the modality check still reads as dermoscopic
            # (some other darkened samples read as clinical and, rightly, get no score).
            dark = [_darkened(p) for p in derm_images[2 * (i - 3) : 2 * (i - 3) + 2]]
            week2.append(_submit(client, i, dark))
        _score_everything(client)
        yield Live(client, clock, store, week1, week2)


def _stored_scores(live: Live) -> list[Score]:
    with live.runtime.database.session() as session:
        rows = session.scalars(select(Score).order_by(Score.id)).all()
        session.expunge_all()
    return list(rows)


def _case_scores(scores: list[Score], version: str, role: str) -> dict[int, float]:
    """Each case's riskiest current photo score by ``version`` in ``role``: computed here from
    the rows, independently of the governance code."""
    found: dict[int, float] = {}
    for score in scores:
        if (
            score.model_version == version
            and score.role == role
            and not score.superseded
            and score.p_malignant is not None  # a photo outside the intended use has no score
        ):
            found[score.case_id] = max(found.get(score.case_id, 0.0), score.p_malignant)
    return found


def test_shadow_scores_are_stored_apart_and_never_reach_the_worklist(live: Live) -> None:
    scores = _stored_scores(live)
    champion = _case_scores(scores, f"{NAME}/1", "champion")
    shadow = _case_scores(scores, f"{NAME}/2", "shadow")
    cases = live.week1_cases + live.week2_cases
    assert set(champion) == set(shadow) == set(cases)
    assert (
        sum(s.role == "shadow" for s in scores) == sum(s.role == "champion" for s in scores) == 12
    )
    assert champion != shadow  # the recalibrated model does say something else
    items = live.get("/api/v1/cases", EXPERT).json()["items"]
    assert {i["id"] for i in items} == set(cases)
    for item in items:
        assert item["score"]["model_version"] == f"{NAME}/1"
        assert item["score"]["p_malignant"] == pytest.approx(champion[item["id"]])


def test_the_auditor_sees_each_version_with_the_live_cases_it_scored(live: Live) -> None:
    overview = live.get("/api/v1/governance/versions").json()
    assert (overview["champion"], overview["challenger"]) == ("1", "2")
    rows = {row["version"]: row for row in overview["versions"]}
    assert rows["1"]["live_cases"] == {"champion": 6}
    assert rows["2"]["live_cases"] == {"shadow": 6}
    assert rows["2"]["trained_by"] == SECOND_SCIENTIST
    listed = live.get("/api/v1/governance/versions/2/cases").json()
    assert listed["n_cases"] == 6
    assert {c["case_id"] for c in listed["cases"]} == set(live.week1_cases + live.week2_cases)
    assert {c["role"] for c in listed["cases"]} == {"shadow"}
    assert all(c["photos"] == 2 for c in listed["cases"])
    # Live cases by the questionnaire's skin type (cases 0-5 cycle through II, IV, VI).
    shadow = _case_scores(_stored_scores(live), f"{NAME}/2", "shadow")
    by_skin = live.get("/api/v1/governance/versions/2").json()["live_by_skin_type"]
    assert [(g["skin_type"], g["n_cases"]) for g in by_skin] == [("II", 2), ("IV", 2), ("VI", 2)]
    cases = live.week1_cases + live.week2_cases
    for k, group in enumerate(by_skin):
        mine = [shadow[cases[i]] for i in range(6) if i % 3 == k]
        assert group["median_score"] == pytest.approx(sum(mine) / 2)
        assert group["share_urgent"] == pytest.approx(sum(v >= 0.7 for v in mine) / 2)
    page = live.get("/governance").text
    assert 'id="champion">1<' in page and 'id="challenger">2<' in page
    version_page = live.get("/governance/versions/2").text
    assert "Live cases scored: 6" in version_page
    assert "recalibration-commit" in version_page and SECOND_SCIENTIST in version_page
    assert "Skin type was not recorded" in version_page


def test_shadow_agreement_and_would_be_ordering_match_the_stored_scores(live: Live) -> None:
    scores = _stored_scores(live)
    champion = _case_scores(scores, f"{NAME}/1", "champion")
    shadow = _case_scores(scores, f"{NAME}/2", "shadow")
    found = live.get("/api/v1/governance/shadow").json()
    ag = found["agreement"]
    assert ag["n"] == 6
    same = sum(score_tier(champion[c]) == score_tier(shadow[c]) for c in champion)
    assert ag["same_tier_rate"] == pytest.approx(same / 6)
    diffs = [abs(shadow[c] - champion[c]) for c in champion]
    assert ag["mean_abs_difference"] == pytest.approx(sum(diffs) / 6)
    expected = {
        c for c in champion if score_tier(champion[c]) != score_tier(shadow[c]) or
        abs(shadow[c] - champion[c]) > ag["score_gap"]
    }  # fmt: skip
    assert expected, "the recalibrated version should triage some live case differently"
    assert {d["case_id"] for d in ag["disagreements"]} == expected
    # Would-be ordering: the worklist's order now is rank_now; the shadow's scores reorder it.
    worklist = [i["id"] for i in live.get("/api/v1/cases", EXPERT).json()["items"]]
    by_now = sorted(found["ordering"], key=lambda row: row["rank_now"])
    assert [row["case_id"] for row in by_now] == worklist
    assert [row["rank_shadow"] for row in found["ordering"]] == [1, 2, 3, 4, 5, 6]
    for row in found["ordering"]:
        assert row["p_shadow"] == pytest.approx(shadow[row["case_id"]])
    compare = live.get("/api/v1/governance/compare?a=1&b=2").json()
    assert compare["agreement"] == ag
    page = live.get("/governance/compare?a=1&b=2").text
    for case_id in expected:
        assert f'data-case="{case_id}"' in page


def test_a_case_scoring_history_shows_every_model_and_which_score_counts(live: Live) -> None:
    case_id = live.week1_cases[0]
    history = live.get(f"/api/v1/governance/cases/{case_id}/scores").json()["scores"]
    assert [(h["model_version"], h["role"]) for h in history] == [
        (f"{NAME}/1", "champion"),
        (f"{NAME}/1", "champion"),
        (f"{NAME}/2", "shadow"),
        (f"{NAME}/2", "shadow"),
    ]
    assert [h["used_by_worklist"] for h in history] == [True, True, False, False]
    assert "no (shadow)" in live.get(f"/governance/cases/{case_id}").text


def test_drift_flags_the_week_of_darkened_photos_with_the_stated_test(live: Live) -> None:
    from scipy import stats

    drift = live.get("/api/v1/governance/drift").json()
    assert drift["version"] == "1" and drift["alpha"] == 0.05
    first, second = drift["weeks"]
    assert (first["week"], second["week"]) == ("2026-W47", "2026-W48")
    assert first["n_photos"] == second["n_photos"] == 6
    assert "brightness" not in first["flagged"]
    assert "brightness" in second["flagged"]
    shift = next(s for s in second["shifts"] if s["measure"] == "brightness")
    reference = load_reference(open_client(live.store.tracking_uri), NAME, "1")
    assert reference is not None
    with live.runtime.database.session() as session:
        from serving.db.models import Photo

        photos = session.scalars(select(Photo).where(Photo.case_id.in_(live.week2_cases))).all()
        week2 = [p.quality["metrics"]["median_luma"] for p in photos]
    expected = stats.ks_2samp(reference.values["brightness"], week2)
    assert shift["p_value"] == pytest.approx(expected.pvalue)
    assert shift["statistic"] == pytest.approx(expected.statistic)
    assert shift["threshold"] == pytest.approx(0.05 / len(second["shifts"]))
    page = live.get("/governance/drift").text
    assert 'data-week="2026-W48"' in page and "flagged" in page


def test_governance_is_for_auditors_and_admins_only(live: Live) -> None:
    for user in (GP, EXPERT):
        headers = sign_in(live.client, user)
        assert live.client.get("/api/v1/governance/versions", headers=headers).status_code == 403
        assert live.client.get("/governance/versions/1", headers=headers).status_code == 403
    live.client.cookies.clear()
    assert live.client.get("/api/v1/governance/versions").status_code == 401
    assert live.get("/api/v1/governance/versions", ADMIN).json()["champion"] in ("1", "2")


def test_the_audit_report_pdf_of_a_version(live: Live, tmp_path: Path) -> None:
    from pypdf import PdfReader

    response = live.get("/governance/versions/1/report.pdf")
    assert response.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "Audit report: dermtriage-classifier version 1" in text
    assert "test-data-scientist" in text and BOOTSTRAP_USER in text
    assert "promote of version 1 (champion before: none) by dermtriage-bootstrap" in text
    assert "6 as champion" in text
    assert "Skin type was not recorded" in text
    plot = live.get("/governance/versions/1/plots/roc.png")
    assert plot.headers["content-type"] == "image/png" and plot.content[:4] == b"\x89PNG"
    # The same report without the service, from the command line.
    out = tmp_path / "audit-v1.pdf"
    assert _cli(live.runtime.settings, "governance", "report", "1", "--out", str(out)) == 0
    offline = "\n".join(p.extract_text() for p in PdfReader(out).pages)
    assert "Audit report: dermtriage-classifier version 1" in offline and "6 as champion" in offline


def test_promotion_after_shadow_mode_goes_through_the_gates_and_rollback_is_one_step(
    live: Live,
) -> None:
    settings = live.runtime.settings
    reason = "shadow mode: same tier on most live cases; better calibrated"
    assert _cli(settings, "models", "promote", "2", "--reason", reason, "--user", "pr-dubois",
                "--tolerance", "0.05", "--sens-tolerance", "0.5") == 0  # fmt: skip
    # A new case is now scored by version 2 as champion; the challenger alias is gone.
    overview = live.get("/api/v1/governance/versions").json()
    assert (overview["champion"], overview["challenger"]) == ("2", None)
    live.clock.now = T0 + timedelta(days=8)
    case_id = _submit(live.client, 9, [live_photo(live)])
    _score_everything(live.client)
    history = live.get(f"/api/v1/governance/cases/{case_id}/scores").json()["scores"]
    assert [(h["model_version"], h["role"]) for h in history] == [(f"{NAME}/2", "champion")]
    rollback_reason = "worklist complaints after the switch"
    assert _cli(settings, "models", "rollback", "--reason", rollback_reason,
                "--user", "pr-dubois") == 0  # fmt: skip
    dossier = live.get("/api/v1/governance/versions/2").json()
    actions = [(h["action"], h["version"], h["user"]) for h in dossier["history"]]
    assert actions == [
        ("challenger", "2", SECOND_SCIENTIST),
        ("promote", "2", "pr-dubois"),
        ("rollback", "1", "pr-dubois"),
    ]
    promoted = dossier["history"][1]
    assert promoted["reason"] == reason and promoted["gates"]["passed"]
    assert {g["name"] for g in promoted["gates"]["gates"]} == {
        "malignant_auroc",
        "sens_at_95_spec",
        "worst_source_malignant_auroc",
    }
    assert dossier["tags"]["rolled_back_by"] == "pr-dubois"
    assert dossier["live_cases"] == {"champion": 1, "shadow": 6}
    first = live.get("/api/v1/governance/versions/1").json()
    assert first["aliases"] == ["champion"]
    assert first["in_service_since"] == dossier["history"][2]["at"]  # back by the rollback
    page = live.get("/governance/versions/2").text
    assert 'data-action="rollback"' in page and "worklist complaints" in page
    # Every registry step is in the audit trail, the first-start bootstrap's included.
    trail = _trail(live)
    model_events = [(a, who, v, d["registry_sequence"]) for a, who, v, _, d in trail
                    if a.startswith("model.")]  # fmt: skip
    assert model_events == [
        ("model.promote", BOOTSTRAP_USER, f"{NAME}/1", 1),
        ("model.challenger", SECOND_SCIENTIST, f"{NAME}/2", 2),
        ("model.promote", "pr-dubois", f"{NAME}/2", 3),
        ("model.rollback", "pr-dubois", f"{NAME}/1", 4),
    ]
    promotion = next(d for a, _, v, _, d in trail if a == "model.promote" and v == f"{NAME}/2")
    assert promotion["gates_passed"] is True and promotion["previous_champion"] == "1"
    # The held-out-source gate passes: neither version carries a held-out-source figure.
    assert promotion["gates"] == {
        "malignant_auroc": True,
        "sens_at_95_spec": True,
        "worst_source_malignant_auroc": True,
    }


def _trail(live: Live) -> list[tuple[str, str, str | None, int | None, dict[str, Any]]]:
    """The audit trail as (action, actor, model version, case, details), oldest first."""
    with live.runtime.database.session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        return [(e.action, e.actor_id, e.model_version, e.case_id, e.details) for e in events]


def test_shadow_scoring_and_the_auditors_reads_are_in_the_audit_trail(live: Live) -> None:
    case_id = live.week2_cases[0]
    live.get(f"/governance/cases/{case_id}")
    live.get("/governance/versions/2/report.pdf", ADMIN)
    trail = _trail(live)
    shadowed = {c for a, _, v, c, _ in trail if a == "case.shadow_score"}
    assert set(live.week1_cases + live.week2_cases) <= shadowed
    shadow_scores = _case_scores(_stored_scores(live), f"{NAME}/2", "shadow")
    event = next(d for a, _, _, c, d in trail if a == "case.shadow_score" and c == case_id)
    assert event == {"photos": 2, "p_malignant": round(shadow_scores[case_id], 4)}
    assert (AUDITOR, case_id) in [
        (who, c) for a, who, _, c, _ in trail if a == "governance.case_scores.read"
    ]
    assert (ADMIN, f"{NAME}/2") in [
        (who, v) for a, who, v, _, _ in trail if a == "governance.report.export"
    ]


def test_an_auditor_reads_the_governance_pages_in_a_real_browser(
    live: Live, chromium_executable: str
) -> None:
    """The pages as served (security headers, CSP, static files): a second server on the same
    database and store, Debian's Chromium through Playwright, sign-in through the form."""
    import socket
    import threading
    import time

    import uvicorn
    from playwright.sync_api import sync_playwright

    from tests.serving.conftest import seed_accounts, sign_in_page

    settings = live.runtime.settings
    seed_accounts(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_executable)
            page = browser.new_page(accept_downloads=True)
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text
                    else None)  # fmt: skip
            sign_in_page(page, base, AUDITOR)
            page.goto(f"{base}/governance")
            page.click("#versions a:text-is('version 2')")
            assert SECOND_SCIENTIST in page.locator("#lineage").inner_text()
            roc = page.locator("#plots img").first
            assert roc.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
            warning = page.locator("#subgroups .gov-warning").first
            assert warning.evaluate("e => getComputedStyle(e).color") == "rgb(161, 60, 0)"
            with page.expect_download() as download:
                page.click("text=Audit report (PDF)")
            assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
            page.goto(f"{base}/governance/drift")
            assert page.locator("svg.drift-chart circle.flagged").count() >= 1
            assert blocked == []
            browser.close()
    finally:
        server.should_exit = True
        thread.join(30)


def live_photo(live: Live) -> bytes:
    with live.runtime.database.session() as session:
        from serving.db.models import Photo

        sha = session.scalars(select(Photo.sha256).limit(1)).one()
    return live.runtime.store.get(sha)
