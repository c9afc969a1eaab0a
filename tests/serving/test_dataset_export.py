"""``dermtriage dataset export``: the consented, validated cases as a derm-dev style folder.

A real database (SQLite and PostgreSQL), the real photo store with derm-dev photos, the real
command line and a real local MLflow store. The folder must load with the trainer's own reader,
verify against its hashes, name nobody, and say what it left out and why.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from PIL import Image

from serving.cli import main
from serving.dataset_export import ExportError, export_dataset
from serving.db.session import Database
from serving.settings import get_settings
from serving.storage import PhotoStore
from tests.serving.closed_cases import add_closed_case
from training.data import load_metadata

KEY = b"test-export-key-of-32-bytes-long"
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
SECRETS = (
    "Dupont-Secret",
    "Traitement-Secret",
    "secret",
    "PAT-",
    "dr-martin",
    "Claire Martin",
    "Lilas",
    "Sophie Bernard",
    "Dubois",
    "2026-03-14",
    "2026-03-17",
)


@pytest.fixture
def centre(
    tmp_path: Path, database_url: str, derm_images: list[Path]
) -> tuple[Database, PhotoStore, dict[str, bytes]]:
    """Eight closed cases covering every path through the export."""
    database = Database(database_url)
    database.upgrade()
    store = PhotoStore(tmp_path / "data" / "photos")
    jpeg = [p.read_bytes() for p in derm_images]
    png = io.BytesIO()
    Image.open(derm_images[5]).save(png, format="PNG")
    with database.session() as session:
        # Melanoma in the report, histology says basal cell carcinoma: histology wins.
        add_closed_case(
            session,
            store,
            [(jpeg[0], "close_up"), (jpeg[1], "dermoscopy"), (jpeg[2], "wide")],
            report_code="melanoma",
            outcomes=(("bcc", "histology", date(2026, 4, 2)),),
            patient="PAT-0001",
        )
        add_closed_case(
            session, store, [(jpeg[3], "dermoscopy")], report_code="naevus", patient="PAT-0002"
        )
        add_closed_case(
            session, store, [(jpeg[4], "close_up")], report_code="inflammatory", patient="PAT-0003"
        )
        add_closed_case(
            session, store, [(jpeg[6], "close_up")], report_code="uncertain", patient="PAT-0004"
        )
        add_closed_case(
            session,
            store,
            [(jpeg[7], "close_up")],
            report_code="melanoma",
            consent=False,
            patient="PAT-0005",
        )
        add_closed_case(
            session,
            store,
            [(jpeg[8], "close_up")],
            report_code="melanoma",
            validated=False,
            patient="PAT-0006",
        )
        add_closed_case(
            session,
            store,
            [(png.getvalue(), "close_up")],
            report_code="vascular",
            patient="PAT-0007",
            domain="clinical",
        )
        add_closed_case(
            session,
            store,
            [(jpeg[9], "close_up"), (jpeg[10], "dermoscopy")],
            report_code="dermatofibroma",
            quality_ok=False,
            patient="PAT-0008",
        )
    yield database, store, {"bcc_close_up": jpeg[0], "nv": jpeg[3]}
    database.dispose()


def test_the_export_holds_the_consented_validated_cases_in_derm_devs_layout(
    centre: tuple[Database, PhotoStore, dict[str, bytes]], tmp_path: Path
) -> None:
    database, store, photos = centre
    out = tmp_path / "export"
    read: list[int] = []
    result = export_dataset(
        database, store, out, key=KEY, now=NOW, chunk_size=2, on_chunk=read.append
    )
    assert read == [2, 4, 6]  # six consented, validated cases, read two at a time
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",
        "images",
        "manifest.json",
        "metadata.csv",
    ]

    table = load_metadata(out)  # the trainer's own reader accepts it
    assert sorted(table["dx"]) == ["bcc", "bcc", "nv", "vasc"]
    bcc = table[table["dx"] == "bcc"]
    assert set(bcc["dx_type"]) == {"histo"} and set(bcc["confirmation"]) == {"histology"}
    assert bcc["lesion_id"].nunique() == 1 and bcc["image_id"].nunique() == 2
    nv = table[table["dx"] == "nv"].iloc[0]
    assert (nv["dx_type"], nv["confirmation"], nv["malignant"]) == ("consensus", "expert_report", 0)
    assert set(table["month"]) == {"2026-03"} and set(table["age"]) == {55}
    assert set(table["centre"]) == {"crd-lyon"} and set(table["dataset"]) == {"dermtriage-crd-lyon"}
    assert table.set_index("dx").loc["vasc", "photo_domain"] == "clinical"
    # Images are the stored photos, byte for byte; the PNG one became a JPEG.
    stored = {Path(p).read_bytes() for p in table["image_path"]}
    assert photos["bcc_close_up"] in stored and photos["nv"] in stored
    for path in table["image_path"]:
        assert Image.open(path).format == "JPEG"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result.manifest
    assert (manifest["cases"], manifest["images"], manifest["cases_read"]) == (3, 4, 6)
    assert manifest["images_per_class"] == {"bcc": 2, "nv": 1, "vasc": 1}
    assert manifest["left_out"]["cases"] == {
        "diagnosis_without_class": 1,
        "no_reference_diagnosis": 1,
        "no_usable_photo": 1,
    }
    assert manifest["left_out"]["photos"] == {"overview_photo": 1, "quality_refused": 2}
    assert manifest["validated_without_consent"] == 1
    assert manifest["png_reencoded_as_jpeg"] == 1


def test_every_file_matches_its_hash_and_one_hash_pins_the_folder(
    centre: tuple[Database, PhotoStore, dict[str, bytes]], tmp_path: Path
) -> None:
    database, store, _ = centre
    out = export_dataset(database, store, tmp_path / "export", key=KEY, now=NOW).out_dir
    listed = {}
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert set(listed) == files - {"SHA256SUMS", "manifest.json"}
    for name, digest in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["files"]["SHA256SUMS"]
        == hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()
    )


def test_nothing_in_the_folder_names_a_person_or_dates_finer_than_the_month(
    centre: tuple[Database, PhotoStore, dict[str, bytes]], tmp_path: Path
) -> None:
    database, store, _ = centre
    out = export_dataset(database, store, tmp_path / "export", key=KEY, now=NOW).out_dir
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".jpg":
            text = path.read_text(encoding="utf-8")
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} in {path.name}"
    header = (out / "metadata.csv").read_text().splitlines()[0].split(",")
    assert not {"patient_pseudonym", "requester_name", "clinical_question", "text"} & set(header)


def test_the_same_cases_keep_their_identifiers_from_one_export_to_the_next(
    centre: tuple[Database, PhotoStore, dict[str, bytes]], tmp_path: Path
) -> None:
    database, store, _ = centre
    first = export_dataset(database, store, tmp_path / "a", key=KEY, now=NOW).out_dir
    second = export_dataset(database, store, tmp_path / "b", key=KEY, now=NOW).out_dir
    assert (first / "metadata.csv").read_bytes() == (second / "metadata.csv").read_bytes()


def test_a_taken_folder_is_refused_and_left_as_it_was(
    centre: tuple[Database, PhotoStore, dict[str, bytes]], tmp_path: Path
) -> None:
    database, store, _ = centre
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_dataset(database, store, taken, key=KEY, now=NOW)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]


def test_an_export_that_fails_half_way_leaves_no_folder_behind(
    centre: tuple[Database, PhotoStore, dict[str, bytes]], tmp_path: Path
) -> None:
    database, store, _ = centre

    def interrupted(read: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_dataset(database, store, tmp_path / "out", key=KEY, now=NOW, chunk_size=2,
                       on_chunk=interrupted)  # fmt: skip
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_the_command_exports_and_logs_the_folder_to_mlflow_as_a_data_set(
    centre: tuple[Database, PhotoStore, dict[str, bytes]],
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DERMTRIAGE_DATABASE_URL", database_url)
    for name in ("MLFLOW_TRACKING_URI", "DERMTRIAGE_MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        out = tmp_path / "centre-2026-12"
        assert main(["dataset", "export", "--out", str(out)]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert (summary["cases"], summary["images"]) == (3, 4)
        key_file = tmp_path / "data" / "dataset-export.key"
        assert key_file.stat().st_mode & 0o077 == 0  # the key is the owner's alone
        assert main(["dataset", "export", "--out", str(out)]) == 2  # taken: refused, clearly
        assert "not an empty folder" in capsys.readouterr().err
        tracking_uri = get_settings().tracking_uri
    finally:
        get_settings.cache_clear()
    client = mlflow.tracking.MlflowClient(tracking_uri)
    run = client.get_run(summary["mlflow"]["run_id"])
    inputs = run.inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [
        ("centre-2026-12", summary["mlflow"]["digest"])
    ]
    manifest_sha = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert run.data.tags["manifest_sha256"] == manifest_sha
    assert (
        json.loads(
            pd.io.common.Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path="manifest.json", tracking_uri=tracking_uri
                )
            ).read_text()
        )["images"]
        == 4
    )
