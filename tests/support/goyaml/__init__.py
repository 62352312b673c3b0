"""The real go-yaml for tests: goyaml-parse (main.go here) reads a secrets file exactly as
`infisical secrets set --file=X.yaml` does (yaml.v3 Unmarshal into a map, strings only).

    go = go_yaml_or_skip()        # in a session fixture
    go.parse('"K": "v"\\n')        # -> {"K": "v"}, or raises GoYamlError(parseSecrets' text)
    go.parse_each([doc1, doc2])   # -> [dict | GoYamlError, ...] with one process start

The binary is built on first use by build.sh into tests/support/goyaml/goyaml-parse
(gitignored), and rebuilt when main.go or go.mod is newer than it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BINARY = HERE / "goyaml-parse"
BUILD_SCRIPT = HERE / "build.sh"
SOURCES = (HERE / "main.go", HERE / "go.mod")


class GoYamlUnavailable(Exception):
    """Go or yaml.v3 is missing, or the build failed; the message says which."""


class GoYamlError(Exception):
    """go-yaml (or parseSecrets' string check) refused the document: the CLI's error text,
    e.g. "failed to parse YAML file: yaml: control characters are not allowed"."""


def ensure_built() -> Path:
    if BINARY.exists() and BINARY.stat().st_mtime >= max(s.stat().st_mtime for s in SOURCES):
        return BINARY
    if shutil.which("go") is None:
        raise GoYamlUnavailable("the Go toolchain is not installed "
                                "(apt-get install golang-go golang-gopkg-yaml.v3-dev)")
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise GoYamlUnavailable(f"{BUILD_SCRIPT} failed (exit {result.returncode}): "
                                f"{result.stderr.strip() or result.stdout.strip()}")
    return BINARY


def _as_bytes(document: str | bytes) -> bytes:
    # surrogatepass lets a test hand go-yaml a deliberately broken (CESU-8) document.
    return document if isinstance(document, bytes) else document.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class GoYaml:
    binary: Path

    def parse(self, document: str | bytes) -> dict[str, str]:
        """The secrets go-yaml reads from `document`; GoYamlError with the CLI's text if none."""
        (result,) = self.parse_each([document])
        if isinstance(result, GoYamlError):
            raise result
        return result

    def parse_each(self, documents: list[str | bytes]) -> list[dict[str, str] | GoYamlError]:
        """Each document parsed on its own, all in one goyaml-parse run."""
        with tempfile.TemporaryDirectory(prefix="goyaml-") as folder:
            paths = []
            for index, document in enumerate(documents):
                path = os.path.join(folder, f"push-{index}.yaml")
                with open(path, "wb") as handle:
                    handle.write(_as_bytes(document))
                paths.append(path)
            result = subprocess.run([str(self.binary), "-each", *paths], capture_output=True,
                                    timeout=120, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"goyaml-parse failed (exit {result.returncode}): "
                               f"{result.stderr.decode(errors='replace')}")
        return [GoYamlError(item["error"]) if "error" in item else item["secrets"]
                for item in json.loads(result.stdout)]


def must_have_go_yaml() -> bool:
    """CI runs (REQUIRE_DOCKER=1 or CI=true) fail instead of skipping without go-yaml."""
    return os.environ.get("REQUIRE_DOCKER") == "1" or os.environ.get("CI", "").lower() in ("true", "1")


def go_yaml_or_skip() -> GoYaml:
    """A GoYaml, or skip the test (fail it when must_have_go_yaml())."""
    import pytest

    try:
        return GoYaml(ensure_built())
    except GoYamlUnavailable as exc:
        reason = f"the real go-yaml parser is not available: {exc}"
        if must_have_go_yaml():
            pytest.fail(f"{reason} (REQUIRE_DOCKER=1 or CI=true: go-yaml must be present)",
                        pytrace=False)
        pytest.skip(reason)
