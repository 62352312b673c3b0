"""`up`, `plan` and `down` with `--target swarm`: the same stack and secrets flow, deployed
with `docker stack deploy`, and nothing written to disk but a stack file that holds no value.

Flow: the engine must be a swarm manager -> secrets (fresh export; else the versions the
swarm already runs; else `.env` for a first deploy) -> the stack file for the chosen profile
(swarm_file) -> Docker secrets for the `<VAR>_FILE` keys, from stdin -> `docker stack
deploy`, with only the interpolated keys in its environment -> wait until every service
converged -> remove secret versions older than the previous one.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from . import compose, keys, swarm, swarm_file
from .envfile import parse_dotenv
from .errors import BAD_CONFIG, DOCKER_UNAVAILABLE, FAILED, OK, LauncherError
from .masking import Masker
from .output import Output
from .prepare import classified_masker, local_infisical, seed_masker
from .secrets_source import DEPLOYED, FRESH, Obtained, obtain_for_swarm, report_origin
from .settings import Settings, require_dotenv

# One variable of more than this cannot reach a process's environment on Linux
# (MAX_ARG_STRLEN, 32 pages, counted with "KEY=" and the closing NUL): `docker stack deploy`
# would fail with "Argument list too long".
MAX_VARIABLE_BYTES = 128 * 1024
# Nor can all of them together, with argv, go over ARG_MAX (a quarter of the default 8 MiB
# stack: 2 MiB), each string counted with its NUL and its pointer.
MAX_EXEC_BYTES = 2 * 1024 * 1024
POLL_S = 1.0


@dataclass
class SwarmPrepared:
    masker: Masker
    obtained: Obtained
    values: dict[str, str]  # what `${KEY}` means for this deploy (shell > export > .env)
    rendered: swarm_file.Rendered
    deployed: dict[str, swarm.Service]
    secret_names: dict[str, str]  # key -> the Docker secret name its current value gets


def name_key(settings: Settings) -> bytes:
    """The key of the secrets' names' HMAC, or exit 6 with the fix (doctor checks by it)."""
    value = settings.shell.get(keys.SWARM_NAME_KEY) or settings.dotenv.get(keys.SWARM_NAME_KEY)
    if not value or len(value) < 16:
        raise LauncherError(f"--target swarm names Docker secrets by an HMAC keyed by {keys.SWARM_NAME_KEY}, "
                            f"which {settings.env_file.name} does not set (or is shorter than 16 characters)",
                            BAD_CONFIG, f"run `python start_services.py init` to add one, or add "
                            f"{keys.SWARM_NAME_KEY}=<`openssl rand -hex 32`> to {settings.env_file.name}")
    return value.encode("utf-8")


def _values(settings: Settings, obtained: Obtained) -> dict[str, str]:
    """Compose's layers: `.env`, the fresh export over it, the shell over both."""
    values = parse_dotenv(settings.dotenv_text or "", interpolate=True)
    if obtained.origin == FRESH:
        values.update({k: s.reveal() for k, s in obtained.secrets.items()})
    values.update(settings.shell)
    return values


def compose_model(settings: Settings, masker: Masker) -> dict:
    """`docker compose config --no-interpolate` of the chosen files: needs no secret."""
    target = compose.Target(settings.project_dir, settings.project_name, settings.compose_files_with_override,
                            (settings.env_file,), settings.profiles)
    env = compose.compose_env(settings.shell, settings.profiles)
    result = compose.capture(target.config_json(interpolate=False), env, settings.project_dir)
    # Masked whole, then split: a multi-line value would pass line by line in fragments.
    lines = [compose.redact(line) for line in masker.mask(result.stderr).splitlines() if line.strip()]
    if result.returncode != 0:
        compose.diagnose(compose.Outcome(result.returncode, tuple(lines)), settings.project_name)
        raise LauncherError(f"docker compose cannot read the compose files: {(lines or ['no message'])[-1]}",
                            BAD_CONFIG)
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise LauncherError("docker compose config printed something other than JSON", BAD_CONFIG) from None


def prepare(settings: Settings, out: Output, *, start_infisical: bool, start_timeout: float) -> SwarmPrepared:
    require_dotenv(settings)
    masker = classified_masker(settings, out)  # first: docker's messages below pass it
    swarm.require_manager(settings.shell, masker.mask)
    hmac_key = name_key(settings)
    deployed = swarm.services(settings.project_name, settings.shell, masker.mask)
    # The local Infisical stays a compose project on the manager.
    unreachable = local_infisical(settings, out, masker, start_infisical, start_timeout)
    # With no service (after `down`) the stack's Docker secrets may still be there: asked only
    # then, so that a rerun without Infisical does not silently deploy `.env`'s older values.
    kept = bool(deployed) or bool(swarm.secrets(settings.project_name, settings.shell, masker.mask))
    obtained = obtain_for_swarm(settings, masker, bool(deployed), unreachable, kept_secrets=kept)
    masker.add(s.reveal() for s in obtained.secrets.values())
    report_origin(obtained, settings, out)
    shadowed = keys.shadowed_keys(settings, obtained.secrets)
    if shadowed:
        out.warn(f"your shell exports {', '.join(shadowed)}; the deploy uses the shell's value over "
                 f"Infisical's and {settings.env_file.name}'s, as compose would (unset them to use those)")
    values = _values(settings, obtained)
    # Any key the stack file uses exactly, as `${KEY}`, may become a Docker secret; never
    # the variables that only tell the docker CLI where the engine is.
    names = {key: swarm_file.secret_name(settings.project_name, key, value, hmac_key)
             for key, value in values.items() if value and key not in swarm.CLI_VARS and not swarm.steers_cli(key)}
    rendered = swarm_file.render(compose_model(settings, masker), settings.project_name, settings.profiles, names,
                                 frozenset(values))
    for note in rendered.notes:
        out.info(f"Stack file: {note}.")
    return SwarmPrepared(masker, obtained, values, rendered, deployed, names)


def deploy_environment(prepared: SwarmPrepared, settings: Settings) -> dict[str, str]:
    """`docker stack deploy`'s environment, or exit 6 when it could not start with it (a key
    that steers the docker CLI, a value over 128 KiB, all of them over ARG_MAX). `up` asks
    before it creates any Docker secret, `plan` asks too: neither may promise a deploy that
    would then fail half-way."""
    env = swarm.deploy_env(settings.shell, prepared.values, prepared.rendered.interpolated)
    fix = (f"have the service read it from a file: `<VAR>_FILE` for an image that supports it "
           f"(docs/swarm.md), or `{swarm_file.FILE_ENV_EXTENSION}: [VAR]` on the service")
    for key in sorted(prepared.rendered.interpolated & env.keys()):
        size = len(key.encode("utf-8")) + 2 + len(env[key].encode("utf-8"))
        if size > MAX_VARIABLE_BYTES:
            raise LauncherError(f"{key} is {size // 1024} KiB: a variable over 128 KiB cannot reach `docker stack "
                                "deploy` through its environment", BAD_CONFIG, fix)
    argv = swarm.stack_deploy_argv(Path(tempfile.gettempdir()) / "start-services-stack-XXXXXXXX" / "stack.json",
                                   settings.project_name)
    total = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) + 2 + 8 for k, v in env.items()) \
        + sum(len(a.encode("utf-8")) + 1 + 8 for a in argv)
    if total > MAX_EXEC_BYTES:
        largest = sorted((k for k in prepared.rendered.interpolated & env.keys()), key=lambda k: -len(env[k]))[:3]
        raise LauncherError(f"the values `docker stack deploy` gets in its environment come to {total // 1024} KiB: "
                            "over the 2 MiB a process's arguments and environment may hold together "
                            f"(largest: {', '.join(largest)})", BAD_CONFIG, fix.replace("read it", "read the largest"))
    return env


def _check_placement(prepared: SwarmPrepared, shell: Mapping[str, str]) -> None:
    """Every service with a named volume runs where a node label says the volume lives."""
    needed = {label: service for service, labels in prepared.rendered.constraints.items() for label in labels}
    if not needed:
        return
    nodes = swarm.node_labels(shell, prepared.masker.mask)
    missing = sorted(label for label in needed if not any(n.get(label) == "true" for n in nodes))
    if missing:
        services = sorted({needed[label] for label in missing})
        raise LauncherError(
            f"no swarm node is labelled for the volume of {', '.join(services)}: "
            f"{', '.join(label + '=true' for label in missing)}", DOCKER_UNAVAILABLE,
            "label the node that holds (or should hold) the data: "
            + "; ".join(f"docker node update --label-add {label}=true <node>" for label in missing)
            + " (docs/swarm.md)")


# Docker CLI 26+ tells that `stack deploy` does not wait; the launcher waits itself (and
# cannot pass --detach, which the 20.10 CLI does not know).
CLI_NOTICES = ("Since --detach=false was not specified", "In a future release, --detach=false")


def _relay(text: str, masker: Masker, out: Output) -> list[str]:
    # The whole text first, then lines: a value with a newline, masked line by line, would
    # pass in fragments no single line matches.
    lines = [line for line in masker.mask(text).splitlines() if line.strip() and not line.startswith(CLI_NOTICES)]
    for line in lines:
        out.relay(line)
    return lines


def up(settings: Settings, out: Output, *, start_timeout: float, converge_timeout: float,
       dry_run: bool = False) -> int:
    prepared = prepare(settings, out, start_infisical=not dry_run, start_timeout=start_timeout)
    stack = settings.project_name
    rendered = prepared.rendered
    out.record(command="up", target="swarm", dry_run=dry_run, project=stack, profile=settings.profile or None,
               environment=settings.environment,
               secrets={"origin": prepared.obtained.origin,
                        "reason": prepared.masker.mask(prepared.obtained.reason) or None})
    if prepared.obtained.origin == DEPLOYED:
        added = sorted(set(rendered.services) - set(prepared.deployed))
        dropped = sorted(set(prepared.deployed) - set(rendered.services))
        if added or dropped:
            out.warn("the chosen profile would " + " and ".join(
                part for part in (f"add {', '.join(added)}" if added else "",
                                  f"remove {', '.join(dropped)}" if dropped else "") if part)
                + ", which needs the secrets: run again when Infisical is reachable "
                  "(or with --skip-infisical to deploy with .env's values)")
        out.success(f"Stack '{stack}' left as deployed ({', '.join(sorted(prepared.deployed))}): "
                    "no secret version changed.")
        return OK
    env = deploy_environment(prepared, settings)
    wanted = {prepared.secret_names[key]: key for key in rendered.file_keys}
    if dry_run:
        out.result("Dry run: nothing created, nothing deployed.")
        out.result(f"Services: {', '.join(rendered.services)}")
        out.result(f"Docker secrets (as files): {', '.join(sorted(rendered.file_keys)) or 'none'}")
        out.result(f"Environment of docker stack deploy: {', '.join(sorted(rendered.interpolated)) or 'none'}")
        out.result(f"Command: {compose.display(swarm.stack_deploy_argv(Path('<stack file>'), stack))}")
        return OK
    _check_placement(prepared, settings.shell)
    existing = {s.name for s in swarm.secrets(stack, settings.shell, prepared.masker.mask)}
    for name, key in sorted(wanted.items()):
        if name not in existing:
            out.detail(f"$ {compose.display(swarm.secret_create_argv(stack, key, name))} < (the value of {key})")
            swarm.create_secret(stack, key, name, prepared.values[key], settings.shell, prepared.masker.mask)
    with tempfile.TemporaryDirectory(prefix="start-services-stack-") as tmp:
        # The stack file names keys, never values; still private, and gone after the deploy.
        path = Path(tmp) / "stack.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(rendered.stack, handle, indent=2)
        argv = swarm.stack_deploy_argv(path, stack)
        out.detail(f"$ {compose.display(argv)}")
        result = swarm.run(argv, settings.shell, timeout=300, env=env)
    lines = _relay(result.stdout + result.stderr, prepared.masker, out)
    if result.returncode != 0:
        out.failure_lines(lines[-10:])
        raise LauncherError(f"docker stack deploy failed: {(lines or ['no message'])[-1]}", FAILED)
    converged = converge(stack, rendered.services, settings.shell, converge_timeout, out, prepared.masker)
    out.record(services=[{"name": name, "state": "converged"} for name in converged])
    prune_secrets(stack, settings.shell, out, prepared.masker)
    out.success(f"Stack '{stack}' is deployed to the swarm "
                f"({'profile ' + settings.profile if settings.profile else 'no profile'}, {settings.environment}).")
    return OK


def converge(stack: str, names: list[str], shell: Mapping[str, str], timeout: float, out: Output,
             masker: Masker) -> list[str]:
    """Wait until every service has its desired replicas running (healthy, when it has a
    healthcheck: Swarm counts a task as running only then) and no update is under way.
    Twice in a row, a poll apart: right after a deploy, an update may not have begun yet."""
    deadline = time.monotonic() + timeout
    settled = 0
    with out.status(f"Waiting for {len(names)} service(s) to converge..."):
        while True:
            pending = _pending(stack, names, shell, masker)
            if not pending:
                settled += 1
                if settled >= 2:
                    break
            else:
                settled = 0
                failed = {n: why for n, why in pending.items() if why.startswith("update ")}
                if failed or time.monotonic() >= deadline:
                    name, why = sorted((failed or pending).items())[0]
                    error = _last_error(stack, name, shell)
                    raise LauncherError(
                        masker.mask(f"service {name} did not converge within {timeout:g} s ({why})"
                                    + (f"; its last task error: {error}" if error else "")), FAILED,
                        f"`docker service ps --no-trunc {stack}_{name}` shows its tasks")
            time.sleep(POLL_S)
    for name in names:
        out.info(f"  {name}: converged")
    return names


def _pending(stack: str, names: list[str], shell: Mapping[str, str], masker: Masker) -> dict[str, str]:
    current = swarm.services(stack, shell, masker.mask)
    pending = {}
    for name in names:
        service = current.get(name)
        if service is None:
            pending[name] = "not created"
            continue
        if service.update_state in ("paused", "rollback_started", "rollback_paused", "rollback_completed"):
            pending[name] = f"update {service.update_state}"
            continue
        if service.update_state == "updating":
            pending[name] = "updating"
            continue
        running = [t for t in swarm.tasks(stack, name, shell)
                   if t.desired == "Running" and t.current.startswith("Running")]
        want = service.replicas if service.replicas is not None else max(1, len(running))
        if len(running) < want:
            pending[name] = f"{len(running)}/{want} running"
    return pending


def _last_error(stack: str, name: str, shell: Mapping[str, str]) -> str:
    for task in swarm.tasks(stack, name, shell):
        if task.error:
            return task.error
    return ""


def _in_use(stack: str, shell: Mapping[str, str], masker: Masker) -> tuple[set[str], set[str]]:
    """The secrets the services' specs name, and those their previous specs name (what
    `docker service rollback` returns to): the engine refuses to remove only the first."""
    current: set[str] = set()
    previous: set[str] = set()
    for service in swarm.services(stack, shell, masker.mask).values():
        for spec, found in ((service.spec, current), (service.previous_spec, previous)):
            container = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {})
            found |= {str(ref.get("SecretName")) for ref in container.get("Secrets") or []}
    return current, previous


def prune_secrets(stack: str, shell: Mapping[str, str], out: Output, masker: Masker) -> None:
    """Per key: keep every version a service's spec or previous spec uses; when no previous
    spec names one (no rollback target is known: the key's services were removed, or last
    updated before it was), the newest other one too. Remove the rest."""
    current, previous = _in_use(stack, shell, masker)
    by_key: dict[str, list[swarm.DeployedSecret]] = {}
    for secret in swarm.secrets(stack, shell, masker.mask):
        by_key.setdefault(secret.key, []).append(secret)
    old = []
    for key, versions in by_key.items():
        spare = [v for v in versions if v.name not in current | previous]  # oldest first
        old += [v.name for v in (spare if any(v.name in previous for v in versions) else spare[:-1])]
    if old:
        result = swarm.remove_secrets(old, shell)
        if result.returncode != 0:
            out.warn(f"could not remove every old secret version: {swarm.first_line(masker.mask(result.stderr))}")
        else:
            out.info(f"Removed {len(old)} old secret version(s); the previous one of each key stays for rollback.")


# -- plan -------------------------------------------------------------------------------------

def plan(settings: Settings, out: Output) -> int:
    prepared = prepare(settings, out, start_infisical=False, start_timeout=0)
    out.record(command="plan", target="swarm", project=settings.project_name, profile=settings.profile or None,
               environment=settings.environment,
               secrets={"origin": prepared.obtained.origin,
                        "reason": prepared.masker.mask(prepared.obtained.reason) or None})
    if prepared.obtained.origin != DEPLOYED:
        deploy_environment(prepared, settings)  # what `up` would refuse, `plan` refuses too
    decided = decide(prepared, settings)
    out.record(services=[{"name": n, "action": a, "why": w} for n, (a, w) in decided.items()])
    out.result("Services:")
    for name, (action, why) in decided.items():
        out.result(f"  {name}: {action}" + (f" ({'; '.join(why)})" if why else ""))
    return OK


def decide(prepared: SwarmPrepared, settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """Per service: create / update (and why: which secret, which setting) / untouched / remove."""
    rendered, deployed = prepared.rendered, prepared.deployed
    if prepared.obtained.origin == DEPLOYED:
        return {name: ("untouched", ["Infisical unavailable: the deployed versions are kept"])
                for name in sorted(deployed)}
    decided: dict[str, tuple[str, list[str]]] = {}
    for name in rendered.services:
        if name not in deployed:
            decided[name] = ("create", [])
            continue
        why = _differences(rendered.stack["services"][name], deployed[name].spec, prepared, settings)
        decided[name] = ("update", why) if why else ("untouched", [])
    for name in sorted(set(deployed) - set(rendered.services)):
        decided[name] = ("remove", ["not in the chosen profile"])
    return dict(sorted(decided.items()))


def _differences(wanted: dict, spec: dict, prepared: SwarmPrepared, settings: Settings) -> list[str]:
    """What a deploy would change in this service, as far as the launcher compares: image,
    command, entrypoint, environment, secrets, replicas, placement (docs/swarm.md)."""
    values = prepared.values
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    why: list[str] = []

    def text(value):
        return swarm_file.interpolate(value, values) if isinstance(value, str) else value

    def words(value):
        if value is None:
            return []
        return [text(v) for v in value] if isinstance(value, list) else str(text(value)).split()

    if text(wanted.get("image")) != container.get("Image"):
        why.append("image changed")
    if words(wanted.get("command")) != list(container.get("Args") or []):
        why.append("command changed")
    if words(wanted.get("entrypoint")) != list(container.get("Command") or []):
        why.append("entrypoint changed")
    current_env = dict(item.partition("=")[::2] for item in container.get("Env") or [])
    environment = swarm_file.environment_map(wanted.get("environment"))
    wanted_env = {var: text(value) for var, value in environment.items()}
    # Variables the stack loader merged from an env_file are in the spec but not in the
    # stack file's environment: not compared (the launcher does not parse those files as
    # the loader does), rather than reported "removed" on every run.
    from_files = set(current_env) - set(wanted_env) if wanted.get("env_file") else set()
    for var in sorted((set(current_env) | set(wanted_env)) - from_files):
        if current_env.get(var) == wanted_env.get(var):
            continue
        used = sorted(keys.referenced_variables(str(environment.get(var) or "")))
        if var not in current_env:
            why.append(f"environment {var} added")
        elif var not in wanted_env:
            why.append(f"environment {var} removed")
        elif len(used) == 1:
            why.append(f"{'secret' if used[0] in _secret_keys(prepared, settings) else 'value'} {used[0]} changed")
        else:
            why.append(f"environment {var} changed" + (f" (uses {', '.join(used)})" if used else ""))
    current_refs = {str((r.get("File") or {}).get("Name")): str(r.get("SecretName"))
                    for r in container.get("Secrets") or []}
    wanted_refs = {str(r.get("target")): str(r.get("source")) for r in wanted.get("secrets") or []
                   if isinstance(r, dict)}
    for target in sorted(set(current_refs) | set(wanted_refs)):
        if current_refs.get(target) != wanted_refs.get(target):
            why.append(f"secret {target} changed" if target in current_refs and target in wanted_refs
                       else f"secret {target} {'added' if target in wanted_refs else 'removed'}")
    mode = spec.get("Mode") or {}
    replicas = (wanted.get("deploy") or {}).get("replicas", 1)
    if "Replicated" in mode and (mode["Replicated"] or {}).get("Replicas") != replicas:
        why.append("replicas changed")
    placement = ((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("Constraints") or []
    wanted_placement = ((wanted.get("deploy") or {}).get("placement") or {}).get("constraints") or []
    if sorted(placement) != sorted(wanted_placement):
        why.append("placement changed")
    return list(dict.fromkeys(why))


def _secret_keys(prepared: SwarmPrepared, settings: Settings) -> set[str]:
    return set(prepared.obtained.secrets) | {k for k in settings.dotenv if keys.SECRET_NAME.search(k)}


# -- down -------------------------------------------------------------------------------------

def down(settings: Settings, out: Output, timeout: float = 120) -> int:
    """`docker stack rm`: services and the stack's networks go; volumes and the Docker
    secrets stay (Docker never gives their values back: the next `up` needs Infisical, or an
    explicit --skip-infisical, docs/swarm.md). Needs no secret."""
    stack = settings.project_name
    masker = _down_masker(settings)
    swarm.require_manager(settings.shell, masker.mask)
    argv = swarm.stack_rm_argv(stack)
    out.detail(f"$ {compose.display(argv)}")
    deadline = time.monotonic() + timeout
    while True:
        result = swarm.run(argv, settings.shell, timeout=max(deadline - time.monotonic(), 1))
        text = result.stdout + result.stderr
        if result.returncode == 0 or not swarm.only_busy_networks(text) or time.monotonic() >= deadline:
            break
        # The network goes on the next try once its tasks stopped: its refusal is no failure to show.
        _relay("\n".join(line for line in text.splitlines() if "in use by task" not in line), masker, out)
        out.detail("a network is still in use by the stack's stopping tasks: removing it again in a moment")
        time.sleep(POLL_S)
    lines = _relay(text, masker, out)
    if result.returncode != 0:
        out.failure_lines(lines[-10:])
        raise LauncherError(f"docker stack rm failed: {(lines or ['no message'])[-1]}", FAILED)
    # `docker stack rm` returns before the containers are gone: wait, so that what runs next
    # (a compose `up`, a volume backup) finds them stopped.
    while swarm.containers(stack, settings.shell) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    out.success(f"Stack '{stack}' is removed from the swarm (volumes and Docker secrets kept).")
    return OK


def _down_masker(settings: Settings) -> Masker:
    """What `down` relays from docker is masked like any run's: `.env`'s secrets, the last
    export, the CLI's credentials (each simply absent when `down` runs without them)."""
    return seed_masker(settings, keys.classify(settings))
