"""``dermtriage models``: list, show, rollback and challenger against a real local MLflow store.

The store is the default one the settings derive from ``DERMTRIAGE_DATA_DIR`` (SQLite under the
data folder). Two tiny real PyTorch models are logged in it once; each test registers them under
its own model name (``DERMTRIAGE_REGISTERED_MODEL_NAME``) and drives the command line.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import torch

from serving.cli import main
from serving.settings import Settings, get_settings
from training.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    open_client,
    promote,
    promotion_history,
    register_version,
)

N_CLASSES = 7


@dataclass
class LocalStore:
    data_dir: Path
    tracking_uri: str
    strong_uri: str
    weak_uri: str
    figures: dict[str, dict[str, float]]


def log_linear(experiment_id: str, scale: float) -> str:
    layer = torch.nn.Linear(N_CLASSES, N_CLASSES)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.eye(N_CLASSES))
        layer.bias.zero_()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"scale-{scale}"):
        mlflow.log_param("scale", scale)
        info = mlflow.pytorch.log_model(
            layer, name="model", pip_requirements=["torch"], serialization_format="pickle"
        )
    return info.model_uri


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStore]:
    """The settings' default local store in a temporary data folder, with two models logged."""
    data_dir = tmp_path_factory.mktemp("data")
    tracking_uri = Settings(data_dir=data_dir, mlflow_tracking_uri=None).tracking_uri
    assert tracking_uri.startswith("sqlite:///") and str(data_dir) in tracking_uri
    (data_dir / "mlflow").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mlflow.set_tracking_uri(tracking_uri)
        try:
            experiment = open_client(tracking_uri).create_experiment(
                "cli-tests", artifact_location=(data_dir / "mlflow" / "artifacts").as_uri()
            )
            strong_uri = log_linear(experiment, 3.0)
            weak_uri = log_linear(experiment, 0.5)
        finally:
            mlflow.set_tracking_uri(None)
    # Figures as an evaluation would store them; the CLI only reads them back.
    figures = {
        "strong": {"malignant_auroc": 0.941, "sens_at_95_spec": 0.62, "balanced_accuracy": 0.78},
        "weak": {"malignant_auroc": 0.873, "sens_at_95_spec": 0.41, "balanced_accuracy": 0.55},
    }
    yield LocalStore(data_dir, tracking_uri, strong_uri, weak_uri, figures)


@pytest.fixture
def model_name(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the settings at the local store, under a registered model name of this test's own."""
    name = f"dermtriage-cli-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(local_store.data_dir))
    monkeypatch.setenv("DERMTRIAGE_REGISTERED_MODEL_NAME", name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DERMTRIAGE_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    get_settings.cache_clear()
    yield name
    get_settings.cache_clear()


def two_champions(store: LocalStore, name: str) -> tuple[str, str]:
    """Register weak then strong; promote weak, then strong over it. Returns (weak, strong)."""
    client = open_client(store.tracking_uri)
    weak = str(register_version(client, name, store.weak_uri, store.figures["weak"]).version)
    strong = str(
        register_version(
            client, name, store.strong_uri, store.figures["strong"], {"trained_by": "alice"}
        ).version
    )
    for version, key in ((weak, "weak"), (strong, "strong")):
        promote(
            client,
            name,
            version,
            user="bob",
            reason=f"{key} model",
            evaluate=lambda uri: store.figures["strong" if uri.endswith(f"/{strong}") else "weak"],
        )
    return weak, strong


def test_list_shows_every_version_with_aliases_and_figures(
    local_store: LocalStore, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    weak, strong = two_champions(local_store, model_name)
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{model_name} (2 versions)"
    assert lines[1].split()[:7] == [
        "VERSION",
        "ALIASES",
        "AUROC",
        "SENS@95SP",
        "SPEC@95SE",
        "BAL.ACC",
        "ECE",
    ]
    newest, oldest = lines[2].split(), lines[3].split()
    assert newest[:7] == [strong, "champion", "0.941", "0.620", "-", "0.780", "-"]
    assert newest[7] == "alice"
    assert oldest[:3] == [weak, "-", "0.873"]


def test_list_as_json(
    local_store: LocalStore, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, strong = two_champions(local_store, model_name)
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed] == [strong, "1"]
    assert listed[0]["aliases"] == ["champion"]
    assert listed[0]["metrics"]["malignant_auroc"] == 0.941


def test_show_gives_lineage_and_promotion_history(
    local_store: LocalStore, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    weak, strong = two_champions(local_store, model_name)
    assert main(["models", "show", strong]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == strong
    assert shown["aliases"] == ["champion"]
    assert shown["run"]["params"] == {"scale": "3.0"}
    assert shown["tags"]["promoted_by"] == "bob"
    assert shown["tags"]["previous_champion"] == weak
    assert [(h["action"], h["version"]) for h in shown["history"]] == [
        ("promote", strong),  # the weak version's promotion does not concern this one
    ]


def test_rollback_restores_the_previous_champion_and_records_it(
    local_store: LocalStore, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    weak, strong = two_champions(local_store, model_name)
    code = main(["models", "rollback", "--reason", "GPs report odd scores", "--user", "dana"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"from version {strong} to {weak}, by dana" in out
    client = open_client(local_store.tracking_uri)
    assert alias_version(client, model_name, CHAMPION) == weak
    last = promotion_history(client, model_name)[-1]
    assert (last.action, last.user, last.reason) == ("rollback", "dana", "GPs report odd scores")

    # Nothing before the first champion: a clear error and exit code 2, the alias stays.
    assert main(["models", "rollback", "--reason", "again", "--user", "dana"]) == 2
    assert alias_version(client, model_name, CHAMPION) == weak


def test_user_defaults_to_the_os_login(
    local_store: LocalStore, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_champions(local_store, model_name)
    monkeypatch.setenv("LOGNAME", "login-of-test")  # getpass reads LOGNAME first
    assert main(["models", "rollback", "--reason", "check default user"]) == 0
    last = promotion_history(open_client(local_store.tracking_uri), model_name)[-1]
    assert last.user == "login-of-test"


def test_challenger_sets_the_alias(
    local_store: LocalStore, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = open_client(local_store.tracking_uri)
    register_version(client, model_name, local_store.strong_uri, local_store.figures["strong"])
    assert main(["models", "challenger", "1", "--reason", "shadow", "--user", "carol"]) == 0
    assert alias_version(client, model_name, CHALLENGER) == "1"
    assert "version 1 is now challenger, by carol" in capsys.readouterr().out


def test_unknown_model_or_version_exits_with_a_message(
    model_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["models", "list"]) == 2
    assert f"no registered model named {model_name!r}" in caplog.text
    assert main(["models", "show", "3"]) == 2


def test_promote_requires_a_reason() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["models", "promote", "2"])
    assert exited.value.code == 2
