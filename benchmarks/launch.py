"""Re-runs against the raw calls: nothing changed, and one secret rotated.

One project of `services` busybox services (svcNN uses SECRET_NN alone) with `secrets`
secrets in the fake Infisical, started once. Then, taking turns round by round:

* no-op: the launcher re-run with nothing changed, against the raw calls it wraps by hand
  (`infisical export`, the file written, `docker compose ... up -d`); the launcher also on a
  pseudo-terminal, where it colours its lines;
* rotation: before each way, one secret (used by one service) is rotated; the launcher (piped
  and on a pseudo-terminal, where it draws the live view and the summary), the raw calls, and
  the old way (export, `docker compose down`, `up -d`).

Every round also counts the containers recreated: none on a no-op, one on a rotation
(down + up recreates all). Then traced launches split a no-op re-run's time into its parts.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from . import where
from .project import Project, recreated, secret_key, secret_values
from .timing import interleave, ms


def run_section(cfg, root: Path) -> dict[str, Any]:
    project = Project(root / "launch", services=cfg.services, secrets=secret_values(cfg.secrets, seed=3))
    try:
        project.learn_calls()  # the first launch starts the stack
        project.launcher()  # the rounds start from a steady state
        noop = no_op(cfg, project)
        rotation = rotate(cfg, project)
        noop["breakdown"] = where.trace_runs(project, cfg.trace_runs)
        return {"services": len(project.services), "secrets": project.secret_count, "noop": noop, "rotation": rotation}
    finally:
        project.down()


def _counting(project: Project, rotate_index: int | None = None):
    """`before` and `after` hooks: rotate (optionally), note the containers, check the export ran."""
    state: dict[str, Any] = {}

    def before(way: str) -> None:
        if rotate_index is not None:
            project.rotate(rotate_index)
        state["ids"] = project.container_ids()
        project.mark()

    def after(way: str, returned: Any) -> int:
        if way == "launcher":
            project.check_exported()
        return recreated(state["ids"], project.container_ids())

    return before, after


def no_op(cfg, project: Project) -> dict[str, Any]:
    before, after = _counting(project)
    comparison = interleave({"launcher": project.launcher, "raw": project.raw, "terminal": project.launcher_on_terminal},
                            cfg.rounds, before=before, after=after)
    raw_parts = comparison.results["raw"]
    return {**comparison.summary(), "recreated": comparison.checks, "terminal": comparison.summary("terminal", "raw"),
            "raw_parts_ms": {k: ms(statistics.median(p[k] for p in raw_parts)) for k in raw_parts[0]},
            "samples_ms": comparison.as_dict()["samples_ms"]}


def rotate(cfg, project: Project) -> dict[str, Any]:
    index = len(project.services) // 2
    before, after = _counting(project, rotate_index=index)
    comparison = interleave({"launcher": project.launcher, "raw": project.raw, "down_up": project.down_then_up,
                             "terminal": project.launcher_on_terminal},
                            cfg.rounds, before=before, after=after)
    return {**comparison.summary(), "rotated": secret_key(index, project.secret_count),
            "terminal": comparison.summary("terminal", "raw"),
            "recreated": comparison.checks, "down_up_ms": comparison.median_ms("down_up"),
            "down_up_over_launcher": comparison.ratio("down_up", "launcher"),
            "samples_ms": comparison.as_dict()["samples_ms"]}
