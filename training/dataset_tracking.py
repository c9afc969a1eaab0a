"""An exported data set as an MLflow run of its own: what a later training run will read.

``dermtriage dataset export`` writes a folder; this logs it to the experiment
``dermtriage-datasets`` as an ``mlflow.data`` input (name, source folder, digest of the table),
with the manifest and the file hashes as artefacts and the manifest's own hash as a tag. A model
trained on the folder later logs the same table as its input, so its lineage and the export's run
can be matched by folder name and hash without anyone's memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import pandas as pd

from training.tracking import configure, git_commit

EXPERIMENT = "dermtriage-datasets"


def log_exported_dataset(
    folder: Path,
    *,
    tracking_uri: str,
    artifact_root: str | None,
    user: str,
    repo_dir: Path | None = None,
    experiment_name: str = EXPERIMENT,
) -> dict[str, Any]:
    """Log the export in ``folder``; returns ``run_id``, ``digest`` and ``manifest_sha256``."""
    folder = Path(folder)
    manifest_bytes = (folder / "manifest.json").read_bytes()
    manifest: Mapping[str, Any] = json.loads(manifest_bytes)
    manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    table = pd.read_csv(folder / "metadata.csv", dtype={"age": "Int64"})
    experiment_id = configure(tracking_uri, experiment_name, artifact_root)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"export {folder.name}") as run:
        dataset = mlflow.data.from_pandas(table, source=str(folder), name=folder.name, targets="dx")
        mlflow.log_input(dataset, context="export")
        mlflow.log_params(
            {
                "format": manifest.get("format"),
                "cases": manifest.get("cases"),
                "images": manifest.get("images"),
            }
        )
        tags = {"manifest_sha256": manifest_sha256, "exported_by": user}
        commit = git_commit(repo_dir) if repo_dir is not None else None
        if commit:
            tags["git_commit"] = commit
        mlflow.set_tags(tags)
        mlflow.log_artifact(str(folder / "manifest.json"))
        mlflow.log_artifact(str(folder / "SHA256SUMS"))
    return {
        "run_id": run.info.run_id,
        "digest": dataset.digest,
        "manifest_sha256": manifest_sha256,
    }
