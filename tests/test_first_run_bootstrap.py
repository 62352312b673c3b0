"""`python3 start_services.py` in a fresh clone, with a Python that has none of the launcher's
dependencies: the first run makes `.venv` and installs into it with pip, later runs switch to
it at once, and whatever cannot work ends in one line with the command to run by hand (exit 2).

The "python3" here is a bare venv (`--without-pip`, no system site-packages) made from the
interpreter running the tests: it has the standard library, venv and ensurepip, and not
typer, rich or python-dotenv. The first-run scenarios install from the package
index the way pip is configured on this machine (PIP_* variables, HOME's and the system's
pip.conf), so they need it reachable, as in CI; the others need no network.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.processes import REPO_ROOT, minimal_env

RUN_TIMEOUT_S = 240  # a first run installs with pip: seconds when the index answers
BOOTSTRAP_ERROR = "error: "
# What pip and TLS need to find the index as they do on this machine; nothing else passes.
_PIP_VARS = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
             "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
# A pip that finds nothing, at once and without the network.
_PIP_OFFLINE = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX paths (.venv/bin/python)")


def _env(**extra: str) -> dict[str, str]:
    env = minimal_env()
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in _PIP_VARS})
    env.pop("START_SERVICES_NO_BOOTSTRAP", None)
    env.update(extra)
    return env


def _fresh_copy(dest: Path) -> Path:
    """The project's tracked files as they are in the working tree (a clone without .venv)."""
    files: list[str] = []
    if shutil.which("git") and (REPO_ROOT / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
                                stdin=subprocess.DEVNULL, env=minimal_env())
        if listed.returncode == 0:
            files = [name for name in listed.stdout.decode().split("\0") if name]
    if not files:  # not a git checkout: what installing and running the launcher needs
        files = ["start_services.py", "pyproject.toml", "README.md"] + [
            str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "stack_launcher").glob("*.py")]
    for name in files:
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A python3 with the standard library only: none of the launcher's dependencies."""
    folder = tmp_path_factory.mktemp("bare-python") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   stdin=subprocess.DEVNULL, env=minimal_env())
    python = str(folder / "bin" / "python")
    probe = subprocess.run([python, "-c", "import typer"], capture_output=True, stdin=subprocess.DEVNULL,
                           env=minimal_env())
    assert probe.returncode != 0, "the bare python can import typer: the scenarios would prove nothing"
    return python


def _run(python: str, clone: Path, *args: str, env: dict[str, str] | None = None,
         prelude: str = "") -> subprocess.CompletedProcess[str]:
    """`python start_services.py *args` from the clone's folder, as a user types it."""
    if prelude:  # run the script as `python start_services.py` would, after `prelude`
        cmd = [python, "-c", f"import runpy, sys; {prelude}; sys.argv = ['start_services.py', *sys.argv[1:]]; "
                             "runpy.run_path('start_services.py', run_name='__main__')", *args]
    else:
        cmd = [python, "start_services.py", *args]
    return subprocess.run(cmd, cwd=clone, env=_env() if env is None else env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, start_new_session=True)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


@pytest.fixture(scope="module")
def first_run(bare_python: str, tmp_path_factory: pytest.TempPathFactory):
    """A fresh clone and its first `python3 start_services.py --version` (which bootstraps)."""
    clone = _fresh_copy(tmp_path_factory.mktemp("clone"))
    started = time.monotonic()
    result = _run(bare_python, clone, "--version")
    return clone, result, time.monotonic() - started


@pytest.fixture(scope="module")
def expected_version(first_run) -> str:
    clone, _, _ = first_run
    own = subprocess.run([sys.executable, str(REPO_ROOT / "start_services.py"), "--version"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, env=minimal_env(), timeout=60)
    assert own.returncode == 0, _shown(own)
    return own.stdout


# ------------------------------------------------------------------------------ the first run


def test_the_first_run_in_a_fresh_clone_says_it_creates_venv_installs_and_then_runs(first_run, expected_version):
    clone, result, took = first_run
    assert result.returncode == 0, _shown(result)
    first = _lines(result.stderr)[0]
    assert first.startswith("start_services.py: first run: creating .venv and installing the project's "
                            "dependencies into it with pip"), _shown(result)
    assert "typer" in first and "not installed" in first, first
    assert "Successfully installed" in result.stderr, "pip's own output is shown"
    assert (clone / ".venv" / "bin" / "python").is_file()
    assert result.stdout == expected_version, "stdout is the launcher's alone (pip writes to stderr)"
    assert "Traceback" not in result.stderr
    assert took < 120, f"the first run took {took:.0f} s"


def test_the_second_run_switches_to_venv_at_once_without_pip(first_run, bare_python, expected_version):
    clone, first, _ = first_run
    assert first.returncode == 0, _shown(first)
    started = time.monotonic()
    result = _run(bare_python, clone, "--version")
    took = time.monotonic() - started
    assert result.returncode == 0, _shown(result)
    assert result.stdout == expected_version
    assert result.stderr == "", "no bootstrap line, no pip"
    assert took < 10, f"the second run took {took:.1f} s"


def test_the_venv_python_runs_the_launcher_directly(first_run, expected_version):
    clone, first, _ = first_run
    assert first.returncode == 0, _shown(first)
    result = _run(str(clone / ".venv" / "bin" / "python"), clone, "--help")
    assert result.returncode == 0 and result.stderr == "", _shown(result)
    assert "Usage" in result.stdout


def test_the_venv_finds_the_project_through_a_plain_path_not_an_import_hook(first_run):
    """Every launch starts Python in .venv: setuptools' editable import hook costs each start
    ~10 ms (docs/benchmarks.md); a .pth holding the project's path costs nothing."""
    clone, first, _ = first_run
    assert first.returncode == 0, _shown(first)
    pth_files = list((clone / ".venv").glob("lib/python*/site-packages/__editable__*.pth"))
    assert pth_files, "pip install -e wrote no .pth"
    for pth in pth_files:
        lines = [line for line in pth.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert lines == [str(clone.resolve())], f"{pth.name}: {lines}"


def test_no_bootstrap_beside_a_venv_names_the_venv_command_and_exits_2(first_run, bare_python):
    clone, first, _ = first_run
    assert first.returncode == 0, _shown(first)
    result = _run(bare_python, clone, "--profile", "cpu", env=_env(START_SERVICES_NO_BOOTSTRAP="1"))
    assert result.returncode == 2, _shown(result)
    assert _lines(result.stderr) == [result.stderr.strip()], "one line"
    line = result.stderr.strip()
    assert line.startswith(BOOTSTRAP_ERROR) and "START_SERVICES_NO_BOOTSTRAP" in line, line
    assert line.endswith("run: .venv/bin/python start_services.py --profile cpu"), line
    assert result.stdout == ""


# ------------------------------------------------------------------ what cannot work: one line, exit 2


def _fresh(tmp_path: Path) -> Path:
    return _fresh_copy(tmp_path / "clone")


def test_no_bootstrap_in_a_fresh_clone_gives_one_line_with_the_manual_commands(bare_python, tmp_path):
    clone = _fresh(tmp_path)
    result = _run(bare_python, clone, "init", env=_env(START_SERVICES_NO_BOOTSTRAP="1"))
    assert result.returncode == 2, _shown(result)
    assert len(_lines(result.stderr)) == 1 and result.stdout == "", _shown(result)
    line = result.stderr.strip()
    assert line.startswith(BOOTSTRAP_ERROR), line
    assert "typer, rich, python-dotenv, pyrage are not installed" in line, line
    assert "python3 -m venv .venv && .venv/bin/python -m pip install -e ." in line, line
    assert line.endswith(".venv/bin/python start_services.py init"), line
    assert not (clone / ".venv").exists(), "nothing created"


def test_a_venv_without_python_is_reported_broken_with_the_fix(bare_python, tmp_path):
    clone = _fresh(tmp_path)
    (clone / ".venv").mkdir()
    result = _run(bare_python, clone, "--version")
    assert result.returncode == 2, _shown(result)
    assert _lines(result.stderr) == [
        "error: .venv is broken (no .venv/bin/python); remove it and run again: rm -rf .venv"], _shown(result)


def test_a_venv_without_the_dependencies_or_pip_is_reported_broken(bare_python, tmp_path):
    clone = _fresh(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True,
                   stdin=subprocess.DEVNULL, env=minimal_env())
    result = _run(bare_python, clone, "--version")
    assert result.returncode == 2, _shown(result)
    assert len(_lines(result.stderr)) == 1, _shown(result)
    line = result.stderr.strip()
    assert line.startswith("error: .venv is broken (") and "no pip" in line, line
    assert line.endswith("remove it and run again: rm -rf .venv"), line


def test_a_python_without_ensurepip_is_told_which_package_to_install(bare_python, tmp_path):
    # Debian's python3 without python3-venv: `venv` is there, `ensurepip` is not.
    clone = _fresh(tmp_path)
    result = _run(bare_python, clone, "--version", prelude="sys.modules['ensurepip'] = None")
    assert result.returncode == 2, _shown(result)
    assert len(_lines(result.stderr)) == 1, _shown(result)
    line = result.stderr.strip()
    assert line.startswith("error: cannot create .venv: this Python") and "ensurepip" in line, line
    if Path("/etc/debian_version").exists():
        minor = f"python{sys.version_info[0]}.{sys.version_info[1]}-venv"
        assert "python3-venv" in line and line.endswith(f"apt install {minor}"), line
    assert not (clone / ".venv").exists(), "no half-made .venv left behind"


def test_when_pip_cannot_install_it_says_so_in_one_line_and_the_next_run_retries(bare_python, tmp_path):
    clone = _fresh(tmp_path)
    result = _run(bare_python, clone, "--version", env=_env(**_PIP_OFFLINE))
    assert result.returncode == 2, _shown(result)
    assert "Traceback" not in result.stderr, _shown(result)
    last = _lines(result.stderr)[-1]
    assert last.startswith("error: pip could not install the dependencies into .venv"), _shown(result)
    assert last.endswith("or by hand: .venv/bin/python -m pip install -e ."), last
    assert result.stdout == ""

    again = _run(bare_python, clone, "--version", env=_env(**_PIP_OFFLINE))
    assert again.returncode == 2, _shown(again)
    assert _lines(again.stderr)[0].startswith(
        "start_services.py: typer, rich, python-dotenv, pyrage are not installed for "), _shown(again)
    assert "installing the project's dependencies into .venv with pip" in _lines(again.stderr)[0]
    assert _lines(again.stderr)[-1].startswith("error: pip could not install"), _shown(again)


def test_run_from_another_folder_the_commands_name_the_project_folder(bare_python, tmp_path):
    clone = _fresh(tmp_path)
    result = subprocess.run([bare_python, str(clone / "start_services.py"), "init"], cwd=tmp_path,
                            env=_env(START_SERVICES_NO_BOOTSTRAP="1"), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 2, _shown(result)
    line = result.stderr.strip()
    assert "python3 -m venv clone/.venv && clone/.venv/bin/python -m pip install -e clone;" in line, line
    assert line.endswith("clone/.venv/bin/python clone/start_services.py init"), line


# ------------------------------------------------------------------------------ one list of dependencies


def test_the_entrypoint_checks_exactly_the_dependencies_pyproject_lists():
    # start_services.py cannot read pyproject.toml cheaply (tomllib is 3.11+, and it runs on
    # every launch), so it names them itself: this keeps the two lists the same.
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    spec = importlib.util.spec_from_file_location("start_services_entrypoint", REPO_ROOT / "start_services.py")
    entrypoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entrypoint)

    def name(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()

    checked = sorted(name(dist) for _, dist in entrypoint.DEPENDENCIES)
    assert checked == sorted(name(r) for r in declared), (
        "start_services.py's DEPENDENCIES (what a first run checks before installing) differ from "
        "pyproject.toml's [project].dependencies")
    for module, _ in entrypoint.DEPENDENCIES:
        assert importlib.util.find_spec(module) is not None, f"{module} is not the import name of an installed dependency"
