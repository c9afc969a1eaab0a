"""The MLflow Model Registry for DermTriage: versions, the champion alias, gates and an audit trail.

One registered model (default ``dermtriage-classifier``) holds every trained version. Two aliases
say what is in service: ``champion`` scores live cases, ``challenger`` may shadow it. (MLflow's
stages are deprecated; aliases are the supported way.)

A version enters service only through :func:`promote`, which re-evaluates the candidate *and* the
current champion on the same test split (the candidate's) and moves ``champion`` only when the
candidate is no worse than the gates allow. Every alias move (promotion, refused promotion,
rollback, challenger) is recorded twice, for two kinds of reader:

- on the version itself, as tags (``promoted_by``, ``promoted_at``, ``promotion_reason``,
  ``gates``, ``previous_champion``), which the MLflow UI shows next to the version;
- as one JSON record per event in a registered-model tag ``promotion_history.NNNNNN``, so that the
  full, ordered history of the model survives later promotions overwriting the version tags
  (:func:`promotion_history`).

Evaluation figures are stored on each version as ``metric.<name>`` tags, so a registry listing
shows them without opening runs. The caller passes an ``MlflowClient``; nothing here reads the
environment. Build it with :func:`open_client`, which pins the registry to the same store as the
tracking URI (MLflow otherwise lets a process-wide registry URI win).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow.entities import LoggedModel
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from models.intended_use import INTENDED_USE, INTENDED_USE_DOMAIN, INTENDED_USE_TAG

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "dermtriage-classifier"
CHAMPION = "champion"
CHALLENGER = "challenger"
METRIC_TAG_PREFIX = "metric."
HISTORY_TAG_PREFIX = "promotion_history."
KEY_METRICS: tuple[str, ...] = (
    "malignant_auroc",
    "sens_at_95_spec",
    "spec_at_95_sens",
    "balanced_accuracy",
    "ece_malignant",
)

# What each kind of history event did.
ACTION_PROMOTE = "promote"
ACTION_REFUSED = "promotion_refused"
ACTION_ROLLBACK = "rollback"
ACTION_CHALLENGER = "challenger"

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_COMPARISON_EPS = 1e-12


class RegistryError(RuntimeError):
    """A registry action that cannot be done as asked (unknown version, nothing to roll back...)."""


def open_client(tracking_uri: str, registry_uri: str | None = None) -> mlflow.MlflowClient:
    """A client whose tracking *and* registry point at ``tracking_uri`` (unless told otherwise).

    ``MlflowClient(tracking_uri=...)`` alone takes its registry from ``mlflow.set_registry_uri`` or
    ``MLFLOW_REGISTRY_URI`` when either is set, which could silently promote in another store.
    """
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _timestamp_iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def _format_metric(value: float) -> str:
    return repr(float(value))


def _parse_metric(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# --- registering and reading versions -------------------------------------------------------


def _ensure_registered_model(client: mlflow.MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            name,
            description="DermTriage malignancy classifier (seven dermoscopic diagnoses). "
            f"Intended use: {INTENDED_USE}",
            tags={INTENDED_USE_TAG: INTENDED_USE_DOMAIN},
        )
        logger.info("created registered model %s", name)


def _logged_models_of_run(client: mlflow.MlflowClient, run_id: str, artifact_name: str | None):
    run = client.get_run(run_id)
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    models = [m for m in found if artifact_name is None or m.name == artifact_name]
    if not models:
        wanted = f" named {artifact_name!r}" if artifact_name else ""
        raise RegistryError(f"run {run_id} logged no model{wanted}")
    if len(models) > 1:
        names = sorted(f"{m.name} ({m.model_id})" for m in models)
        raise RegistryError(f"run {run_id} logged several models {names}; pass models:/<model_id>")
    return models[0]


def _resolve_model(client: mlflow.MlflowClient, ref: str) -> LoggedModel:
    """The logged model behind a ``models:/<model_id>`` URI, a ``runs:/`` URI or a run id."""
    if ref.startswith("models:/"):
        model_id = ref.removeprefix("models:/")
        if "/" in model_id or "@" in model_id:
            raise RegistryError(f"{ref} is a registered version already; register the logged model")
        return client.get_logged_model(model_id)
    if ref.startswith("runs:/"):
        run_id, _, artifact_name = ref.removeprefix("runs:/").partition("/")
        return _logged_models_of_run(client, run_id, artifact_name or None)
    if _RUN_ID.match(ref):
        return _logged_models_of_run(client, ref, None)
    raise RegistryError(f"{ref!r} is neither a models:/<model_id> URI, a runs:/ URI nor a run id")


def register_version(
    client: mlflow.MlflowClient,
    name: str,
    model_uri_or_run_id: str,
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register a logged model as a new version of ``name``, its figures stored as version tags.

    ``model_uri_or_run_id`` is what ``mlflow.<flavour>.log_model`` returned (``models:/<id>``), a
    ``runs:/<run_id>/<name>`` URI, or a run id that logged exactly one model. ``metrics`` become
    ``metric.<key>`` tags (e.g. ``metric.malignant_auroc``); ``tags`` are added as given, plus
    ``logged_model_uri``. When no ``trained_by`` tag is given, the user who ran the training run
    is recorded.
    """
    _ensure_registered_model(client, name)
    logged = _resolve_model(client, model_uri_or_run_id)
    run_id = logged.source_run_id
    version_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    version_tags["logged_model_uri"] = logged.model_uri
    # What the model is for, on every version: the scoring path enforces it (models.intended_use).
    version_tags.setdefault(INTENDED_USE_TAG, INTENDED_USE_DOMAIN)
    version_tags.update({f"{METRIC_TAG_PREFIX}{k}": _format_metric(v) for k, v in metrics.items()})
    if "trained_by" not in version_tags and run_id is not None:
        user = client.get_run(run_id).data.tags.get("mlflow.user")
        if user:
            version_tags["trained_by"] = user
    # The source is the logged model's artefact folder, not its ``models:/<id>`` URI: MLflow's
    # SQL registry resolves such URIs through the process-wide tracking URI rather than this
    # client's, which would fail (or find another store) whenever the two differ.
    version = client.create_model_version(
        name,
        source=logged.artifact_location,
        run_id=run_id,
        tags=version_tags,
        model_id=logged.model_id,
        description=f"Intended use: {INTENDED_USE}",
    )
    logger.info("registered %s version %s from %s", name, version.version, logged.model_uri)
    return version


@dataclass(frozen=True)
class VersionSummary:
    """One line of ``dermtriage models list``: what a version is and how good it was."""

    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    created: str | None
    trained_by: str | None
    metrics: dict[str, float]
    source: str


def _registered_model(client: mlflow.MlflowClient, name: str) -> RegisteredModel:
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no registered model named {name!r}") from exc
        raise


def _aliases_by_version(client: mlflow.MlflowClient, name: str) -> dict[str, list[str]]:
    by_version: dict[str, list[str]] = {}
    for alias, version in _registered_model(client, name).aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def _metrics_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    return {
        key.removeprefix(METRIC_TAG_PREFIX): _parse_metric(value)
        for key, value in sorted(tags.items())
        if key.startswith(METRIC_TAG_PREFIX)
    }


def _summary(version: ModelVersion, aliases: list[str]) -> VersionSummary:
    return VersionSummary(
        version=str(version.version),
        aliases=tuple(sorted(aliases)),
        run_id=version.run_id,
        created=_timestamp_iso(version.creation_timestamp),
        trained_by=version.tags.get("trained_by") or version.user_id,
        metrics=_metrics_from_tags(version.tags),
        source=version.source,
    )


def _quoted(name: str) -> str:
    return "'" + name.replace("'", "\\'") + "'"


def list_versions(client: mlflow.MlflowClient, name: str) -> list[VersionSummary]:
    """Every version of ``name``, newest first, with aliases and its figures at registration."""
    aliases = _aliases_by_version(client, name)
    versions = client.search_model_versions(f"name = {_quoted(name)}")
    summaries = [_summary(v, aliases.get(str(v.version), [])) for v in versions]
    return sorted(summaries, key=lambda s: int(s.version), reverse=True)


def alias_version(client: mlflow.MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None when it is not set."""
    version = _registered_model(client, name).aliases.get(alias)
    return None if version is None else str(version)


def show_version(client: mlflow.MlflowClient, name: str, version: str) -> dict[str, Any]:
    """Everything an auditor asks about one version, as plain JSON-able data.

    Its figures, tags and aliases; the run that trained it (parameters, metrics, git commit,
    data set name and digest); and the history events that concern it.
    """
    model_version = get_version(client, name, version)
    aliases = _aliases_by_version(client, name).get(str(version), [])
    summary = _summary(model_version, aliases)
    details: dict[str, Any] = {
        "name": name,
        **asdict(summary),
        "aliases": list(summary.aliases),
        "status": model_version.status,
        "description": model_version.description,
        "tags": {
            k: v
            for k, v in sorted(model_version.tags.items())
            if not k.startswith(METRIC_TAG_PREFIX)
        },
        "run": _run_details(client, model_version.run_id),
        "history": [
            asdict(record)
            for record in promotion_history(client, name)
            if str(version) in (record.version, record.previous_champion)
        ],
    }
    return details


def _run_details(client: mlflow.MlflowClient, run_id: str | None) -> dict[str, Any] | None:
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        logger.warning("run %s of a registered version cannot be read: %s", run_id, exc)
        return {"run_id": run_id, "error": str(exc)}
    tags = run.data.tags
    return {
        "run_id": run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "started": _timestamp_iso(run.info.start_time),
        "user": tags.get("mlflow.user"),
        "git_commit": tags.get("git_commit") or tags.get("mlflow.source.git.commit"),
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "tags": {k: v for k, v in sorted(tags.items()) if not k.startswith("mlflow.")},
        "datasets": [
            {
                "name": d.dataset.name,
                "digest": d.dataset.digest,
                "source": d.dataset.source,
                "context": next((t.value for t in d.tags if t.key == "mlflow.data.context"), None),
            }
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    }


def get_version(client: mlflow.MlflowClient, name: str, version: str) -> ModelVersion:
    """One version of ``name``; :class:`RegistryError` when there is no such version."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{name} has no version {version}") from exc
        raise


# --- gates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatePolicy:
    """How much worse than the champion a candidate may be and still replace it.

    ``auroc_tolerance``: the candidate's malignant AUROC may be at most this much below the
    champion's (0.01 absorbs the noise of re-evaluating on a few hundred lesions).
    ``sens_tolerance``: likewise for sensitivity at 95% specificity; 0 means no missed cancer
    more at the same false-alarm rate.
    """

    auroc_tolerance: float = 0.01
    sens_tolerance: float = 0.0
    source_tolerance: float = 0.01

    def __post_init__(self) -> None:
        if min(self.auroc_tolerance, self.sens_tolerance, self.source_tolerance) < 0:
            raise ValueError("gate tolerances cannot be negative")


@dataclass(frozen=True)
class Gate:
    """One comparison: ``candidate >= champion - tolerance`` on one figure."""

    name: str
    candidate: float | None
    champion: float | None
    tolerance: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    """The outcome of every gate; ``passed`` only when all did."""

    gates: tuple[Gate, ...]
    note: str = ""

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "note": self.note, "gates": [asdict(g) for g in self.gates]}

    def describe(self) -> str:
        """A few lines a person can read in a terminal."""
        lines = [
            f"gates {'PASSED' if self.passed else 'FAILED'}"
            + (f" ({self.note})" if self.note else "")
        ]
        lines += [f"  [{'ok' if g.passed else 'FAIL'}] {g.name}: {g.detail}" for g in self.gates]
        return "\n".join(lines)


class GateFailed(RegistryError):  # noqa: N818 - the name the callers and the CLI use
    """The candidate is worse than the champion beyond the policy's tolerance."""

    def __init__(self, report: GateReport) -> None:
        super().__init__(report.describe())
        self.report = report


def check_gates(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: GatePolicy | None = None,
) -> GateReport:
    """Compare a candidate's figures with the champion's, both measured on the same split.

    Gates: ``malignant_auroc >= champion - auroc_tolerance`` and ``sens_at_95_spec >= champion -
    sens_tolerance``. A figure missing or NaN on the candidate fails its gate; so does one missing
    on the champion, since "no worse" cannot then be shown. With no champion (``None``) the
    candidate becomes the first one: each gate passes as long as its figure was measured.
    """
    policy = policy or GatePolicy()
    rules = (
        ("malignant_auroc", policy.auroc_tolerance),
        ("sens_at_95_spec", policy.sens_tolerance),
    )
    gates = []
    for metric, tolerance in rules:
        cand = candidate.get(metric)
        champ = None if champion is None else champion.get(metric)
        if not _is_finite(cand):
            passed, detail = False, f"candidate {metric} was not measured ({cand})"
        elif champion is None:
            passed, detail = True, f"candidate {cand:.4f}; no champion to compare with"
        elif not _is_finite(champ):
            passed, detail = False, f"champion {metric} was not measured ({champ})"
        else:
            assert cand is not None and champ is not None
            passed = cand >= champ - tolerance - _COMPARISON_EPS
            detail = f"candidate {cand:.4f} vs champion {champ:.4f} (tolerance {tolerance:g})"
        gates.append(
            Gate(
                name=metric,
                candidate=float(cand) if cand is not None else None,
                champion=float(champ) if champ is not None else None,
                tolerance=tolerance,
                passed=passed,
                detail=detail,
            )
        )
    gates.append(_worst_source_gate(candidate, champion, policy.source_tolerance))
    return GateReport(gates=tuple(gates), note="first champion" if champion is None else "")


WORST_SOURCE = "worst_source_malignant_auroc"


def _worst_source_gate(
    candidate: Mapping[str, float], champion: Mapping[str, float] | None, tolerance: float
) -> Gate:
    """The leave-one-source-out gate: the recipe's malignant AUROC on its worst held-out source
    (a clinic or device it never saw, ``dermtriage evaluate-sources``) may not fall below the
    champion's. A champion registered before those figures existed has none; the gate then
    passes and says so, while a candidate without one facing a champion with one is refused."""
    cand, champ = candidate.get(WORST_SOURCE), (champion or {}).get(WORST_SOURCE)
    if _is_finite(champ) and not _is_finite(cand):
        passed, detail = False, "candidate has no held-out-source figure; the champion has one"
    elif not _is_finite(champ):
        shown = f"{cand:.4f}" if _is_finite(cand) else "none"
        passed, detail = True, f"candidate {shown}; the champion has no held-out-source figure"
    else:
        assert cand is not None and champ is not None
        passed = cand >= champ - tolerance - _COMPARISON_EPS
        detail = f"candidate {cand:.4f} vs champion {champ:.4f} (tolerance {tolerance:g})"
    return Gate(
        name=WORST_SOURCE,
        candidate=float(cand) if _is_finite(cand) else None,
        champion=float(champ) if _is_finite(champ) else None,
        tolerance=tolerance,
        passed=passed,
        detail=detail,
    )


def _registered_figure(
    client: mlflow.MlflowClient, name: str, version: str | None, metric: str
) -> dict[str, float]:
    """A figure stored on the version itself (``metric.<name>`` tag), not re-measurable on a
    split: the held-out-source figures come from separate training runs of the recipe."""
    if version is None:
        return {}
    raw = get_version(client, name, version).tags.get(f"{METRIC_TAG_PREFIX}{metric}")
    try:
        return {} if raw is None else {metric: float(raw)}
    except ValueError:
        return {}


# --- promotion history -----------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionRecord:
    """One alias move (or refused promotion) in the audit trail of a registered model.

    ``previous_champion`` is the champion just before the event (unchanged by a challenger event);
    ``gates`` is :meth:`GateReport.to_dict` for promotions, None for rollbacks and challengers.
    """

    sequence: int
    action: str
    model_name: str
    version: str
    previous_champion: str | None
    user: str
    at: str
    reason: str
    gates: dict[str, Any] | None = field(default=None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> PromotionRecord:
        return cls(**json.loads(text))


def promotion_history(client: mlflow.MlflowClient, name: str) -> list[PromotionRecord]:
    """Every promotion, refusal, rollback and challenger change of ``name``, oldest first."""
    tags = _registered_model(client, name).tags
    records = [
        PromotionRecord.from_json(value)
        for key, value in tags.items()
        if key.startswith(HISTORY_TAG_PREFIX)
    ]
    return sorted(records, key=lambda r: r.sequence)


def _append_history(
    client: mlflow.MlflowClient,
    name: str,
    *,
    action: str,
    version: str,
    previous_champion: str | None,
    user: str,
    reason: str,
    gates: dict[str, Any] | None,
) -> PromotionRecord:
    """Write the next history record; each event is its own tag so none can be truncated."""
    existing = [r.sequence for r in promotion_history(client, name)]
    record = PromotionRecord(
        sequence=max(existing, default=0) + 1,
        action=action,
        model_name=name,
        version=str(version),
        previous_champion=previous_champion,
        user=user,
        at=_now(),
        reason=reason,
        gates=gates,
    )
    client.set_registered_model_tag(
        name, f"{HISTORY_TAG_PREFIX}{record.sequence:06d}", record.to_json()
    )
    logger.info("%s: %s version %s by %s (%s)", name, action, version, user, reason)
    return record


def _require_who_and_why(user: str, reason: str) -> None:
    if not user.strip():
        raise ValueError("a registry change needs the name of the person making it")
    if not reason.strip():
        raise ValueError("a registry change needs a reason, for the audit trail")


def _tag_version_in_service(
    client: mlflow.MlflowClient, name: str, record: PromotionRecord
) -> None:
    version = record.version
    client.set_model_version_tag(name, version, "promoted_by", record.user)
    client.set_model_version_tag(name, version, "promoted_at", record.at)
    client.set_model_version_tag(name, version, "promotion_reason", record.reason)
    client.set_model_version_tag(name, version, "promotion_action", record.action)
    client.set_model_version_tag(
        name, version, "gates", json.dumps(record.gates, sort_keys=True) if record.gates else "none"
    )
    client.set_model_version_tag(
        name, version, "previous_champion", record.previous_champion or "none"
    )


# --- alias moves -----------------------------------------------------------------------------


def promote(
    client: mlflow.MlflowClient,
    name: str,
    version: str,
    *,
    user: str,
    reason: str,
    evaluate: Callable[[str], Mapping[str, float]],
    policy: GatePolicy | None = None,
) -> PromotionRecord:
    """Make ``version`` the champion if it passes the gates against the current champion.

    ``evaluate(model_uri)`` returns the figures of a model on the candidate's test split; it is
    called for ``models:/<name>/<version>`` and for the current champion, so both are compared on
    the same cases. On failure :class:`GateFailed` is raised, the alias does not move, and the
    refusal is recorded in the history. On success the version is tagged with who, when, why,
    the gates and the previous champion, and the event is appended to the history. A
    ``challenger`` alias on the promoted version is removed (it is no longer a challenger).
    """
    _require_who_and_why(user, reason)
    version = str(version)
    get_version(client, name, version)
    previous = alias_version(client, name, CHAMPION)
    if previous == version:
        raise RegistryError(f"{name} version {version} is already the champion")
    candidate_figures = dict(evaluate(f"models:/{name}/{version}"))
    candidate_figures.update(_registered_figure(client, name, version, WORST_SOURCE))
    champion_figures = None if previous is None else dict(evaluate(f"models:/{name}/{previous}"))
    if champion_figures is not None:
        champion_figures.update(_registered_figure(client, name, previous, WORST_SOURCE))
    report = check_gates(candidate_figures, champion_figures, policy)
    if not report.passed:
        _append_history(
            client,
            name,
            action=ACTION_REFUSED,
            version=version,
            previous_champion=previous,
            user=user,
            reason=reason,
            gates=report.to_dict(),
        )
        raise GateFailed(report)
    client.set_registered_model_alias(name, CHAMPION, version)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    record = _append_history(
        client,
        name,
        action=ACTION_PROMOTE,
        version=version,
        previous_champion=previous,
        user=user,
        reason=reason,
        gates=report.to_dict(),
    )
    _tag_version_in_service(client, name, record)
    return record


def _champion_stack(history: list[PromotionRecord]) -> list[str]:
    """Champions in the order they were put in service, with rolled-back ones taken off."""
    stack: list[str] = []
    for record in history:
        if record.action == ACTION_PROMOTE:
            stack.append(record.version)
        elif record.action == ACTION_ROLLBACK and stack:
            stack.pop()
    return stack


def rollback(client: mlflow.MlflowClient, name: str, *, user: str, reason: str) -> PromotionRecord:
    """Put the previous champion back in service, without gates: this is the emergency exit.

    "Previous" follows the history as a stack: after promoting v1, v2, v3, one rollback restores
    v2 and a second restores v1; a third has nothing left and fails. If the alias was moved outside
    this module, the current champion's ``previous_champion`` tag is used instead.
    """
    _require_who_and_why(user, reason)
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    stack = _champion_stack(promotion_history(client, name))
    if stack and stack[-1] == current:
        if len(stack) < 2:
            raise RegistryError(
                f"{name} version {current} is the first champion; nothing before it"
            )
        target = stack[-2]
    else:
        tagged = get_version(client, name, current).tags.get("previous_champion")
        if not tagged or tagged == "none":
            raise RegistryError(f"no record of the champion before {name} version {current}")
        logger.warning("champion alias of %s was moved outside the registry module", name)
        target = tagged
    get_version(client, name, target)
    client.set_registered_model_alias(name, CHAMPION, target)
    record = _append_history(
        client,
        name,
        action=ACTION_ROLLBACK,
        version=target,
        previous_champion=current,
        user=user,
        reason=reason,
        gates=None,
    )
    _tag_version_in_service(client, name, record)
    client.set_model_version_tag(name, current, "rolled_back_by", user)
    client.set_model_version_tag(name, current, "rolled_back_at", record.at)
    client.set_model_version_tag(name, current, "rollback_reason", reason)
    return record


def set_challenger(
    client: mlflow.MlflowClient, name: str, version: str, *, user: str, reason: str
) -> PromotionRecord:
    """Point ``challenger`` at ``version`` (to shadow the champion); recorded like a promotion."""
    _require_who_and_why(user, reason)
    version = str(version)
    get_version(client, name, version)
    champion = alias_version(client, name, CHAMPION)
    if champion == version:
        raise RegistryError(f"{name} version {version} is the champion; it cannot challenge itself")
    client.set_registered_model_alias(name, CHALLENGER, version)
    record = _append_history(
        client,
        name,
        action=ACTION_CHALLENGER,
        version=version,
        previous_champion=champion,
        user=user,
        reason=reason,
        gates=None,
    )
    client.set_model_version_tag(name, version, "challenger_set_by", user)
    client.set_model_version_tag(name, version, "challenger_set_at", record.at)
    client.set_model_version_tag(name, version, "challenger_reason", reason)
    return record
