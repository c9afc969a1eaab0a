"""The load benchmark, smaller: concurrent uploads to a real server process lose nothing.

The same code as ``make bench-load`` (``benchmarks/load.py``): a real uvicorn process on loopback,
real SQLite, real derm-dev photos, real HTTP clients; then every acknowledged case is looked up in
the database with its photo files. Kept small (10 clients x 200 uploads) so the suite stays fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import run_load
from serving.settings import Settings


@pytest.mark.slow
def test_ten_clients_uploading_two_hundred_cases_lose_none(
    tmp_path: Path, dataset_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, scoring_worker=False)
    result = run_load(settings, dataset_dir, clients=10, uploads=200, photos=40)
    print(result.table)
    assert result.outcome.statuses == {"201": 200}, result.table
    assert len(result.outcome.acknowledged) == 200  # 200 distinct cases, one per upload
    assert result.verification.checked == 200
    assert result.verification.missing_cases == []
    assert result.verification.damaged_cases == {}
    assert len(result.outcome.latencies_s) == 200
