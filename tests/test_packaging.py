"""The distributions a user installs: built with ``python -m build``, checked by twine.

Builds the sdist and, from it, the wheel (as a package index's users get them),
then checks what they carry: one version, the license, classifiers, project
URLs, only the user-facing extras, a description whose links work off the
repository, no test suite in the sdist. Finally the wheel is installed into a
fresh venv with only its runtime dependencies and ``asess --version`` runs.
"""

from __future__ import annotations

import email.parser
import importlib.util
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

import asess

from .once import once_per_session

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent
PROJECT_URL = "https://github.com/asess/asess"
DOCS_URL = "https://asess.github.io/asess/"


def _missing_tools() -> str | None:
    for module in ("build", "twine"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -r requirements/dev.txt)"
    return None


def _build(out: Path) -> None:
    from build import ProjectBuilder
    from build.env import DefaultIsolatedEnv

    # What `python -m build` does with no --sdist/--wheel: the sdist, then the wheel
    # from the unpacked sdist, so a file the sdist forgets breaks the wheel build here
    # rather than for users; each in an isolated environment holding only what the
    # build system asks for. The CLI makes that environment twice with the same
    # contents; here both builds share one.
    with DefaultIsolatedEnv() as env, tempfile.TemporaryDirectory() as unpacked:
        source = ProjectBuilder.from_isolated_env(env, ROOT)
        env.install(source.build_system_requires)
        env.install(source.get_requires_for_build("sdist"))
        sdist = Path(source.build("sdist", out))
        with tarfile.open(sdist) as tf:
            # Extraction filters came in 3.10.12 / 3.11.4; our own sdist is trusted either way.
            if hasattr(tarfile, "data_filter"):
                tf.extractall(unpacked, filter="data")
            else:
                tf.extractall(unpacked)
        (top,) = Path(unpacked).iterdir()
        unpacked_builder = ProjectBuilder.from_isolated_env(env, top)
        assert unpacked_builder.build_system_requires == source.build_system_requires
        env.install(unpacked_builder.get_requires_for_build("wheel"))
        unpacked_builder.build("wheel", out)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    return once_per_session(tmp_path_factory, "dist", _build)


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_twine_check_passes_strict(dist: Path) -> None:
    files = [str(p) for p in sorted(dist.iterdir())]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_one_version_everywhere(dist: Path) -> None:
    version = asess.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert _one(dist, "*.whl").name.startswith(f"asess-{version}-")
    assert _one(dist, "*.tar.gz").name == f"asess-{version}.tar.gz"
    assert _metadata(_one(dist, "*.whl"))["Version"] == version
    assert (
        "version ="
        not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("\n[", 1)[0]
    ), "pyproject.toml must not repeat the version"
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()


def test_metadata_license_classifiers_urls_extras(dist: Path) -> None:
    meta = _metadata(_one(dist, "*.whl"))
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Author"] == "the asess authors"
    assert "sessions" in meta["Keywords"]
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    if importlib.util.find_spec("trove_classifiers") is not None:
        from trove_classifiers import classifiers as known

        assert [c for c in classifiers if c not in known] == []
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert all(u.startswith((PROJECT_URL, DOCS_URL)) for u in urls.values()), urls
    # Development and benchmark pins are not something users should install.
    assert set(meta.get_all("Provides-Extra") or []) == {
        "redis",
        "postgres",
        "emmett",
        "aiohttp",
        "granian",
        "demo",
    }
    assert any("uvicorn" in r and 'extra == "demo"' in r for r in meta.get_all("Requires-Dist"))


def test_description_links_are_absolute(dist: Path) -> None:
    meta = _metadata(_one(dist, "*.whl"))
    assert meta["Description-Content-Type"] == "text/markdown"
    body = meta.get_payload()
    assert isinstance(body, str)
    assert "pip install 'asess[redis]'" in body
    assert "make run" not in body
    links = re.findall(r"\]\(([^)]+)\)", body) + re.findall(r"(?m)^- [^:]+: (\S+)$", body)
    assert links, "the description should link to the docs and the source"
    assert [link for link in links if not link.startswith("https://")] == []


def test_sdist_ships_no_tests_and_the_license(dist: Path) -> None:
    with tarfile.open(_one(dist, "*.tar.gz")) as tf:
        names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
    assert [n for n in names if n.startswith(("tests/", "bench/", "docs/"))] == []
    for needed in ("LICENSE", "PYPI.md", "CHANGELOG.md", "pyproject.toml", "asess/py.typed"):
        assert needed in names
    with zipfile.ZipFile(_one(dist, "*.whl")) as zf:
        wheel_names = zf.namelist()
    assert "asess/py.typed" in wheel_names
    assert not [n for n in wheel_names if n.startswith(("tests/", "bench/"))]


def test_wheel_installs_alone_and_reports_its_version(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # No pip of its own (bootstrapping one is most of the cost of a venv): this
    # interpreter's pip installs into it and lists it through --python.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--python",
        str(venv / "bin" / "python"),
    ]
    subprocess.run(
        [*pip, "install", "-q", str(_one(dist, "*.whl"))],
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = subprocess.run(
        [str(venv / "bin" / "asess"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"asess {asess.__version__}"
    listed = subprocess.run(
        [*pip, "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.split()}
    # Only the runtime dependencies (and what they pull in), no server or test tool.
    assert {"asess", "orjson", "cryptography", "aiofiles"} <= installed
    assert not installed & {"uvicorn", "redis", "emmett", "pytest", "starlette"}
