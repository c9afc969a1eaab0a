"""The model registry against a real MLflow store: versions, gates, promotion, rollback, history.

Two tiny real PyTorch models are logged once per module (a strong and a weak linear classifier over
seven classes) and every test registers them under its own model name. Promotion gates compare
figures measured by really loading each registered version and scoring a fixed synthetic split.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from models.network import CLASSES
from training.held_out_sources import as_metrics, attach_to_version
from training.metrics import evaluate_predictions
from training.registry import (
    CHALLENGER,
    CHAMPION,
    WORST_SOURCE,
    GateFailed,
    GatePolicy,
    RegistryError,
    alias_version,
    check_gates,
    list_versions,
    open_client,
    promote,
    promotion_history,
    register_version,
    rollback,
    set_challenger,
    show_version,
)

N_CLASSES = len(CLASSES)


def synthetic_split(n: int = 280, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features that are the one-hot true class plus noise: a linear model can read them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    x = np.eye(N_CLASSES)[y] + 0.7 * rng.normal(size=(n, N_CLASSES))
    return x.astype(np.float32), y


X_TEST, Y_TEST = synthetic_split()


def linear_model(weight: np.ndarray) -> torch.nn.Linear:
    layer = torch.nn.Linear(N_CLASSES, N_CLASSES)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        layer.bias.zero_()
    return layer.eval()


def evaluate(model_uri: str) -> dict[str, float]:
    """Load a model through MLflow and score the fixed split, as the product's evaluate does."""
    model = mlflow.pytorch.load_model(model_uri)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(X_TEST)), dim=1).numpy()
    return evaluate_predictions(Y_TEST, probs, CLASSES)


@dataclass
class Store:
    uri: str
    client: mlflow.MlflowClient
    strong_uri: str
    weak_uri: str
    strong_run: str
    weak_run: str


def log_tiny_model(experiment_id: str, weight: np.ndarray, run_name: str) -> tuple[str, str]:
    """Log a linear model in its own run; returns (model URI, run id)."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({"kind": run_name, "seed": 0})
        mlflow.set_tag("git_commit", "0123abc")
        info = mlflow.pytorch.log_model(
            linear_model(weight),
            name="model",
            pip_requirements=["torch"],
            serialization_format="pickle",  # pt2 export takes seconds; pickle is instant
        )
    return info.model_uri, run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A fresh SQLite-backed MLflow store with a strong and a weak model logged in it."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        # Loading ``models:/name/version`` inside ``evaluate`` goes through the global URIs.
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            client = open_client(uri)
            experiment = client.create_experiment(
                "registry-tests", artifact_location=(root / "artifacts").as_uri()
            )
            strong_uri, strong_run = log_tiny_model(experiment, 3.0 * np.eye(N_CLASSES), "strong")
            noisy = 1.2 * np.eye(N_CLASSES) + np.random.default_rng(1).normal(
                size=(N_CLASSES, N_CLASSES)
            )
            weak_uri, weak_run = log_tiny_model(experiment, noisy, "weak")
            yield Store(uri, client, strong_uri, weak_uri, strong_run, weak_run)
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@pytest.fixture
def name() -> str:
    """A registered model name of this test's own."""
    return f"dermtriage-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def figures(store: Store) -> dict[str, dict[str, float]]:
    return {"strong": evaluate(store.strong_uri), "weak": evaluate(store.weak_uri)}


def register_both(store: Store, name: str, figures) -> tuple[str, str]:
    strong = register_version(
        store.client, name, store.strong_uri, figures["strong"], {"trained_by": "alice"}
    )
    weak = register_version(store.client, name, store.weak_uri, figures["weak"])
    return str(strong.version), str(weak.version)


def test_the_synthetic_models_really_differ(figures) -> None:
    assert figures["strong"]["malignant_auroc"] > figures["weak"]["malignant_auroc"] + 0.05
    assert figures["strong"]["sens_at_95_spec"] > figures["weak"]["sens_at_95_spec"]


class TestRegisterAndList:
    def test_register_stores_figures_and_lineage_on_the_version(
        self, store: Store, name: str, figures
    ) -> None:
        version = register_version(
            store.client, name, store.strong_uri, figures["strong"], {"trained_by": "alice"}
        )
        assert str(version.version) == "1"
        stored = store.client.get_model_version(name, "1")
        assert stored.run_id == store.strong_run
        assert stored.tags["logged_model_uri"] == store.strong_uri
        logged = store.client.get_logged_model(store.strong_uri.removeprefix("models:/"))
        assert stored.source == logged.artifact_location
        assert stored.tags["trained_by"] == "alice"
        assert float(stored.tags["metric.malignant_auroc"]) == figures["strong"]["malignant_auroc"]
        assert float(stored.tags["metric.n"]) == len(Y_TEST)

    def test_every_version_declares_its_intended_use(self, store: Store, name: str) -> None:
        register_version(store.client, name, store.weak_uri, {"malignant_auroc": 0.5})
        version = store.client.get_model_version(name, "1")
        assert version.tags["intended_use"] == "dermoscopic"
        assert version.description.startswith("Intended use: dermoscopic images of a single")
        registered = store.client.get_registered_model(name)
        assert "clinical photos" in registered.description
        assert registered.tags["intended_use"] == "dermoscopic"

    def test_trained_by_defaults_to_the_user_of_the_run(self, store: Store, name: str) -> None:
        register_version(store.client, name, store.weak_uri, {"malignant_auroc": 0.5})
        run_user = store.client.get_run(store.weak_run).data.tags["mlflow.user"]
        assert store.client.get_model_version(name, "1").tags["trained_by"] == run_user

    def test_a_run_id_or_runs_uri_finds_the_logged_model(self, store: Store, name: str) -> None:
        by_run = register_version(store.client, name, store.strong_run, {})
        by_runs_uri = register_version(store.client, name, f"runs:/{store.strong_run}/model", {})
        assert by_run.tags["logged_model_uri"] == store.strong_uri
        assert by_runs_uri.tags["logged_model_uri"] == store.strong_uri
        with pytest.raises(RegistryError, match="no model named 'other'"):
            register_version(store.client, name, f"runs:/{store.strong_run}/other", {})
        with pytest.raises(RegistryError, match="neither"):
            register_version(store.client, name, "/some/folder", {})

    def test_list_versions_newest_first_with_aliases_and_figures(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        promote(store.client, name, strong, user="bob", reason="first model", evaluate=evaluate)
        summaries = list_versions(store.client, name)
        assert [s.version for s in summaries] == [weak, strong]
        assert summaries[1].aliases == (CHAMPION,)
        assert summaries[0].aliases == ()
        assert summaries[1].trained_by == "alice"
        assert summaries[1].run_id == store.strong_run
        assert summaries[0].metrics["sens_at_95_spec"] == figures["weak"]["sens_at_95_spec"]
        assert datetime.fromisoformat(summaries[0].created).tzinfo is not None

    def test_show_version_gives_the_run_and_the_history(
        self, store: Store, name: str, figures
    ) -> None:
        strong, _ = register_both(store, name, figures)
        promote(store.client, name, strong, user="bob", reason="first model", evaluate=evaluate)
        shown = show_version(store.client, name, strong)
        json.dumps(shown)  # plain data, ready for the CLI and the auditor API
        assert shown["aliases"] == [CHAMPION]
        assert shown["metrics"]["malignant_auroc"] == figures["strong"]["malignant_auroc"]
        assert shown["tags"]["promoted_by"] == "bob"
        assert shown["run"]["params"] == {"kind": "strong", "seed": "0"}
        assert shown["run"]["git_commit"] == "0123abc"
        assert [h["action"] for h in shown["history"]] == ["promote"]

    def test_unknown_model_or_version_is_a_clear_error(self, store: Store, name: str) -> None:
        with pytest.raises(RegistryError, match="no registered model"):
            list_versions(store.client, name)
        register_version(store.client, name, store.weak_uri, {})
        with pytest.raises(RegistryError, match="no version 7"):
            show_version(store.client, name, "7")


class TestGates:
    def test_no_champion_passes_as_first_champion(self) -> None:
        report = check_gates({"malignant_auroc": 0.9, "sens_at_95_spec": 0.5}, None)
        assert report.passed
        assert report.note == "first champion"
        assert all(g.champion is None for g in report.gates)

    def test_within_the_auroc_tolerance_passes(self) -> None:
        report = check_gates(
            {"malignant_auroc": 0.915, "sens_at_95_spec": 0.60},
            {"malignant_auroc": 0.920, "sens_at_95_spec": 0.60},
            GatePolicy(auroc_tolerance=0.01),
        )
        assert report.passed
        assert {g.name: (g.candidate, g.champion) for g in report.gates} == {
            "malignant_auroc": (0.915, 0.920),
            "sens_at_95_spec": (0.60, 0.60),
            WORST_SOURCE: (None, None),  # neither has held-out-source figures: nothing to lose
        }

    def test_beyond_the_auroc_tolerance_fails(self) -> None:
        report = check_gates(
            {"malignant_auroc": 0.905, "sens_at_95_spec": 0.70},
            {"malignant_auroc": 0.920, "sens_at_95_spec": 0.60},
            GatePolicy(auroc_tolerance=0.01),
        )
        assert not report.passed
        failed = [g.name for g in report.gates if not g.passed]
        assert failed == ["malignant_auroc"]

    def test_any_loss_of_sensitivity_fails_by_default(self) -> None:
        report = check_gates(
            {"malignant_auroc": 0.95, "sens_at_95_spec": 0.599},
            {"malignant_auroc": 0.92, "sens_at_95_spec": 0.600},
        )
        assert [g.passed for g in report.gates] == [True, False, True]
        assert check_gates(
            {"malignant_auroc": 0.95, "sens_at_95_spec": 0.599},
            {"malignant_auroc": 0.92, "sens_at_95_spec": 0.600},
            GatePolicy(sens_tolerance=0.005),
        ).passed

    def test_an_unmeasured_figure_fails(self) -> None:
        assert not check_gates(
            {"malignant_auroc": float("nan"), "sens_at_95_spec": 0.5}, None
        ).passed
        assert not check_gates(
            {"malignant_auroc": 0.9, "sens_at_95_spec": 0.5}, {"sens_at_95_spec": 0.5}
        ).passed

    def test_negative_tolerance_is_refused(self) -> None:
        with pytest.raises(ValueError):
            GatePolicy(auroc_tolerance=-0.01)


class TestPromotion:
    def test_first_promotion_records_who_when_why(self, store: Store, name: str, figures) -> None:
        strong, _ = register_both(store, name, figures)
        before = datetime.now().astimezone()
        record = promote(
            store.client, name, strong, user="bob", reason="best so far", evaluate=evaluate
        )
        assert alias_version(store.client, name, CHAMPION) == strong
        assert record.previous_champion is None
        assert record.gates["note"] == "first champion"
        tags = store.client.get_model_version(name, strong).tags
        assert tags["promoted_by"] == "bob"
        assert tags["promotion_reason"] == "best so far"
        assert tags["previous_champion"] == "none"
        promoted_at = datetime.fromisoformat(tags["promoted_at"])
        assert promoted_at.utcoffset().total_seconds() == 0
        assert promoted_at >= before.replace(microsecond=0)
        gates = json.loads(tags["gates"])
        assert gates["passed"] is True
        assert gates["gates"][0]["candidate"] == figures["strong"]["malignant_auroc"]

    def test_a_worse_candidate_is_refused_and_the_champion_stays(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        promote(store.client, name, strong, user="bob", reason="first", evaluate=evaluate)
        with pytest.raises(GateFailed) as refused:
            promote(store.client, name, weak, user="eve", reason="try it", evaluate=evaluate)
        assert not refused.value.report.passed
        assert "FAIL" in str(refused.value)
        assert alias_version(store.client, name, CHAMPION) == strong
        assert "promoted_by" not in store.client.get_model_version(name, weak).tags
        last = promotion_history(store.client, name)[-1]
        assert (last.action, last.version, last.user) == ("promotion_refused", weak, "eve")

    def test_gates_compare_both_models_on_the_same_split(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        promote(store.client, name, weak, user="bob", reason="only one", evaluate=evaluate)
        evaluated: list[str] = []

        def recording(uri: str) -> dict[str, float]:
            evaluated.append(uri)
            return evaluate(uri)

        record = promote(
            store.client, name, strong, user="bob", reason="better", evaluate=recording
        )
        assert evaluated == [f"models:/{name}/{strong}", f"models:/{name}/{weak}"]
        assert record.previous_champion == weak
        auroc = next(g for g in record.gates["gates"] if g["name"] == "malignant_auroc")
        assert auroc["champion"] == figures["weak"]["malignant_auroc"]
        assert store.client.get_model_version(name, strong).tags["previous_champion"] == weak

    def test_promoting_the_champion_again_is_an_error(
        self, store: Store, name: str, figures
    ) -> None:
        strong, _ = register_both(store, name, figures)
        promote(store.client, name, strong, user="bob", reason="first", evaluate=evaluate)
        with pytest.raises(RegistryError, match="already the champion"):
            promote(store.client, name, strong, user="bob", reason="again", evaluate=evaluate)

    def test_who_and_why_are_required(self, store: Store, name: str, figures) -> None:
        strong, _ = register_both(store, name, figures)
        with pytest.raises(ValueError, match="reason"):
            promote(store.client, name, strong, user="bob", reason="  ", evaluate=evaluate)
        assert alias_version(store.client, name, CHAMPION) is None

    def test_a_promoted_challenger_stops_being_challenger(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        promote(store.client, name, weak, user="bob", reason="first", evaluate=evaluate)
        set_challenger(store.client, name, strong, user="carol", reason="shadow it")
        assert alias_version(store.client, name, CHALLENGER) == strong
        assert store.client.get_model_version(name, strong).tags["challenger_set_by"] == "carol"
        with pytest.raises(RegistryError, match="cannot challenge itself"):
            set_challenger(store.client, name, weak, user="carol", reason="no")
        promote(store.client, name, strong, user="bob", reason="shadow ok", evaluate=evaluate)
        assert alias_version(store.client, name, CHAMPION) == strong
        assert alias_version(store.client, name, CHALLENGER) is None


class TestRollback:
    def test_rollback_walks_back_through_the_champions(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        third = str(
            register_version(store.client, name, store.strong_run, figures["strong"]).version
        )
        promote(store.client, name, weak, user="bob", reason="v-weak", evaluate=evaluate)
        promote(store.client, name, strong, user="bob", reason="v-strong", evaluate=evaluate)
        promote(store.client, name, third, user="bob", reason="retrained", evaluate=evaluate)

        first = rollback(store.client, name, user="dana", reason="complaints from GPs")
        assert (first.version, first.previous_champion) == (strong, third)
        assert alias_version(store.client, name, CHAMPION) == strong
        tags = store.client.get_model_version(name, strong).tags
        assert (tags["promoted_by"], tags["promotion_action"]) == ("dana", "rollback")
        assert tags["previous_champion"] == third
        assert store.client.get_model_version(name, third).tags["rolled_back_by"] == "dana"

        second = rollback(store.client, name, user="dana", reason="still wrong")
        assert second.version == weak
        with pytest.raises(RegistryError, match="first champion"):
            rollback(store.client, name, user="dana", reason="once more")
        assert alias_version(store.client, name, CHAMPION) == weak

    def test_rollback_without_a_champion_is_an_error(
        self, store: Store, name: str, figures
    ) -> None:
        register_both(store, name, figures)
        with pytest.raises(RegistryError, match="no champion"):
            rollback(store.client, name, user="dana", reason="?")

    def test_history_holds_every_event_in_order(self, store: Store, name: str, figures) -> None:
        strong, weak = register_both(store, name, figures)
        promote(store.client, name, weak, user="bob", reason="r1", evaluate=evaluate)
        set_challenger(store.client, name, strong, user="carol", reason="r2")
        promote(store.client, name, strong, user="bob", reason="r3", evaluate=evaluate)
        with pytest.raises(GateFailed):
            promote(store.client, name, weak, user="eve", reason="r4", evaluate=evaluate)
        rollback(store.client, name, user="dana", reason="r5")

        history = promotion_history(open_client(store.uri), name)  # read back by a new client
        assert [(h.sequence, h.action, h.version, h.user, h.reason) for h in history] == [
            (1, "promote", weak, "bob", "r1"),
            (2, "challenger", strong, "carol", "r2"),
            (3, "promote", strong, "bob", "r3"),
            (4, "promotion_refused", weak, "eve", "r4"),
            (5, "rollback", weak, "dana", "r5"),
        ]
        assert [h.previous_champion for h in history] == [None, weak, weak, strong, strong]
        assert all(h.model_name == name for h in history)
        assert history[0].at <= history[-1].at


# --- a real tracking server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout_s}s")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free local port, in its own process group, always stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_bin),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--default-artifact-root",
        (tmp_path / "server-artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (tmp_path / "server.log").open("wb")
    # Without this the server forks a job runner and seven task consumers that this test never
    # uses and that would compete for the CPU.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    try:
        wait_until_up(url, process, timeout_s=120)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        log.close()


@pytest.mark.slow
def test_register_and_promote_through_a_tracking_server(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.settings import get_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    get_settings.cache_clear()
    try:
        tracking_uri = get_settings().tracking_uri
    finally:
        get_settings.cache_clear()
    assert tracking_uri == mlflow_server  # MLFLOW_TRACKING_URI takes over from the local store

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        client = open_client(tracking_uri)
        experiment = client.create_experiment("server-test")
        model_uri, run_id = log_tiny_model(experiment, 3.0 * np.eye(N_CLASSES), "strong")
        measured = evaluate(model_uri)
        version = register_version(client, "dermtriage-classifier", model_uri, measured)
        record = promote(
            client,
            "dermtriage-classifier",
            str(version.version),
            user="bob",
            reason="first model on the server",
            evaluate=evaluate,
        )
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)

    # A new client, as another process would have, sees it all through the server.
    reader = open_client(mlflow_server)
    assert alias_version(reader, "dermtriage-classifier", CHAMPION) == str(version.version)
    [summary] = list_versions(reader, "dermtriage-classifier")
    assert summary.run_id == run_id
    assert summary.metrics["malignant_auroc"] == measured["malignant_auroc"]
    assert promotion_history(reader, "dermtriage-classifier") == [record]


def _held_out(worst: float) -> dict:
    """A held-out-sources summary as ``dermtriage evaluate-sources`` writes it."""
    return {
        "sources": {
            "clinic_a": {"malignant_auroc": worst, "n": 100.0, "n_malignant": 20.0},
            "clinic_b": {"malignant_auroc": worst + 0.05, "n": 90.0, "n_malignant": 15.0},
        },
        "worst_source": "clinic_a",
        "worst_malignant_auroc": worst,
    }


class TestWorstHeldOutSourceGate:
    """A recipe is judged by the clinic it did worst on; the gate keeps that from regressing."""

    def test_the_figures_are_stored_on_the_version(self, store: Store, name: str, figures) -> None:
        strong, _ = register_both(store, name, figures)
        attach_to_version(store.client, name, strong, _held_out(0.81))
        tags = store.client.get_model_version(name, strong).tags
        assert float(tags["metric.worst_source_malignant_auroc"]) == pytest.approx(0.81)
        assert float(tags["metric.source.clinic_b.malignant_auroc"]) == pytest.approx(0.86)
        assert float(tags["metric.source.clinic_a.n_malignant"]) == 20

    def test_better_split_figures_do_not_excuse_a_worse_held_out_clinic(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        attach_to_version(store.client, name, weak, _held_out(0.90))
        attach_to_version(store.client, name, strong, _held_out(0.70))
        promote(store.client, name, weak, user="bob", reason="first", evaluate=evaluate)
        with pytest.raises(GateFailed) as refused:
            promote(store.client, name, strong, user="bob", reason="better", evaluate=evaluate)
        failed = [g.name for g in refused.value.report.gates if not g.passed]
        assert failed == ["worst_source_malignant_auroc"]
        assert alias_version(store.client, name, CHAMPION) == weak

    def test_a_champion_without_the_figure_lets_the_gate_pass_and_says_so(
        self, store: Store, name: str, figures
    ) -> None:
        strong, weak = register_both(store, name, figures)
        attach_to_version(store.client, name, strong, _held_out(0.70))
        promote(store.client, name, weak, user="bob", reason="first", evaluate=evaluate)
        record = promote(store.client, name, strong, user="bob", reason="x", evaluate=evaluate)
        gate = next(g for g in record.gates["gates"] if g["name"] == WORST_SOURCE)
        assert gate["passed"] and "champion has no held-out-source figure" in gate["detail"]

    def test_a_candidate_without_the_figure_cannot_replace_a_champion_with_one(self) -> None:
        report = check_gates(
            {"malignant_auroc": 0.95, "sens_at_95_spec": 0.8},
            {"malignant_auroc": 0.90, "sens_at_95_spec": 0.7, WORST_SOURCE: 0.85},
        )
        assert not report.passed
        assert [g.name for g in report.gates if not g.passed] == [WORST_SOURCE]

    def test_within_the_tolerance_passes(self) -> None:
        champion = {"malignant_auroc": 0.9, "sens_at_95_spec": 0.7, WORST_SOURCE: 0.85}
        candidate = {**champion, WORST_SOURCE: 0.845}
        assert check_gates(candidate, champion).passed
        assert not check_gates({**champion, WORST_SOURCE: 0.83}, champion).passed

    def test_the_summary_file_becomes_registry_metrics(self) -> None:
        found = as_metrics(_held_out(0.8))
        assert found[WORST_SOURCE] == pytest.approx(0.8)
        assert found["source.clinic_a.n"] == 100.0
        assert set(found) == {
            WORST_SOURCE,
            *(
                f"source.{c}.{k}"
                for c in ("clinic_a", "clinic_b")
                for k in ("malignant_auroc", "n", "n_malignant")
            ),
        }
