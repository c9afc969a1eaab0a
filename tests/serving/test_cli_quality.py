"""``dermtriage quality``: one verdict per file, as JSON lines or readable lines, never a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import synthetic
from pipeline.quality import message
from serving.cli import main


@pytest.fixture
def photos(tmp_path: Path, derm_images: list[Path]) -> dict[str, Path]:
    """A good dermoscopy photo, a blurred one, a text file named .jpg and a truncated JPEG."""
    good = tmp_path / "good.jpg"
    shutil.copyfile(derm_images[0], good)
    rgb = np.asarray(Image.open(good).convert("RGB"))
    blurred = tmp_path / "blurred.jpg"
    blurred.write_bytes(
        synthetic.jpeg_bytes(synthetic.gaussian_blur(rgb, 0.03, np.random.default_rng(0)))
    )
    text = tmp_path / "notes.jpg"
    text.write_text("rendez-vous mardi\n")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:3000])
    return {"good": good, "blurred": blurred, "text": text, "truncated": truncated}


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_json_mode_prints_one_object_per_file_in_order(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(photos[name]) for name in ("good", "blurred", "text", "truncated")]

    status = main(["quality", "--json", *files])

    results = _json_lines(capsys.readouterr().out)
    assert status == 0
    assert [r["file"] for r in results] == files
    for result in results:
        assert list(result) == ["file", "acceptable", "problems", "metrics"]
    good, blurred, text, truncated = results
    assert good["acceptable"] is True and good["problems"] == []
    assert good["metrics"]["original_width"] == 224.0
    assert blurred["acceptable"] is False
    assert {"code": "blur", "message": message("blur", "fr")} in blurred["problems"]
    for unreadable in (text, truncated):
        assert unreadable["acceptable"] is False
        assert [p["code"] for p in unreadable["problems"]] == ["unreadable_file"]
        assert unreadable["metrics"] == {}


def test_english_messages_on_request(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["quality", "--json", "--lang", "en", str(photos["blurred"]), str(photos["text"])])

    blurred, text = _json_lines(capsys.readouterr().out)
    assert {"code": "blur", "message": message("blur", "en")} in blurred["problems"]
    assert "not an image" in text["problems"][0]["message"]


def test_readable_mode_prints_one_line_per_file(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["quality", str(photos["good"]), str(photos["blurred"])])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0] == f"{photos['good']}: acceptable"
    assert lines[1].startswith(f"{photos['blurred']}: à reprendre: [blur] {message('blur')}")


def test_missing_path_is_reported_and_sets_exit_status_1(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "absent.jpg")

    status = main(["quality", "--json", missing, str(photos["good"])])

    missing_result, good = _json_lines(capsys.readouterr().out)
    assert status == 1
    assert missing_result["file"] == missing
    assert missing_result["problems"][0]["code"] == "unreadable_file"
    assert good["acceptable"] is True
