"""A re-run with many secrets (10,000) against the raw calls, taking turns.

One service, `size` secrets in the fake Infisical, nothing changed between runs: the launcher
re-run against the raw calls by hand, for each size (the smallest is the reference). Then
traced launches show which of the launcher's parts grow with the secrets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import where
from .project import Project, secret_values
from .timing import interleave


def run_section(cfg, root: Path) -> list[dict[str, Any]]:
    rows = []
    for size in cfg.sizes:
        project = Project(root / f"scale-{size}", services=1, secrets=secret_values(size, seed=size))
        try:
            project.learn_calls()
            project.launcher()

            def before(way: str) -> None:
                project.mark()

            def after(way: str, returned: Any) -> None:
                if way == "launcher":
                    project.check_exported()

            comparison = interleave({"launcher": project.launcher, "raw": project.raw}, cfg.rounds,
                                    before=before, after=after)
            rows.append({"secrets": size, "export_bytes": len(project.export_by_hand().encode("utf-8")),
                         **comparison.summary(), "samples_ms": comparison.as_dict()["samples_ms"],
                         "breakdown": where.trace_runs(project, cfg.trace_runs)})
        finally:
            project.down()
    return rows
