"""Infisical's REST API, as much as `setup` needs: one small function per call.

Every endpoint, field and error used here is listed in docs/infisical-api.md with the
backend source it was read from (the version infisical/docker-compose.yml pins). The
transport (base URL, token, timeout) lives in `Api`; every call has a timeout, and every
failure becomes one ApiError naming the step, the HTTP status and Infisical's `message`.
Tokens and secrets travel in headers and bodies, never in a URL, and never in an error.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from .secret import Secret

TIMEOUT = 15.0  # seconds for one call
IDENTITY_NAME = "start-services"
# Project role that reads and writes secrets (`member`, shown as "Developer" in the UI):
# migrate writes. db/schemas/models.ts (ProjectMembershipRole).
PROJECT_ROLE = "member"
ORG_ROLE = "member"


class ApiError(Exception):
    """A call failed: `step`, the HTTP `status` (0 when there was no answer), Infisical's message."""

    def __init__(self, step: str, status: int, message: str) -> None:
        super().__init__(f"{step}: " + (f"HTTP {status}: {message}" if status else message))
        self.step, self.status, self.message = step, status, message


@dataclass(frozen=True)
class Api:
    base_url: str  # e.g. http://localhost:8010 (with or without a trailing /api)
    token: Secret | None = None
    timeout: float = TIMEOUT

    def with_token(self, token: Secret) -> "Api":
        return Api(self.base_url, token, self.timeout)

    def get_or_none(self, step: str, path: str) -> dict[str, Any] | None:
        """GET, with "not there yet" (404) as None: how every step asks whether its result exists."""
        try:
            return self.call(step, "GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def call(self, step: str, method: str, path: str, body: dict | None = None,
             query: dict[str, str] | None = None) -> dict[str, Any]:
        base = self.base_url.rstrip("/")
        base = base[: -len("/api")] if base.endswith("/api") else base
        url = base + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        headers = {"Accept": "application/json", "User-Agent": "start_services-setup"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        host = urllib.parse.urlsplit(url).hostname or ""
        # The local Infisical is never reached through a proxy; another host as the user's
        # environment says (urllib's default).
        handlers: list = [_NoRedirect()]  # a redirect would carry the Bearer token to another host
        if host in ("localhost", "127.0.0.1", "::1"):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(step, exc.code, _message(exc.read())) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise ApiError(step, 0, f"no answer from {base}: {reason}") from None
        except (OSError, ValueError) as exc:  # timeouts, resets
            what = f"no answer within {self.timeout:g} s" if "timed out" in str(exc) else exc.__class__.__name__
            raise ApiError(step, 0, f"no answer from {base}: {what}") from None
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(step, 200, "the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ApiError(step, 200, "the answer is not a JSON object")
        return answer


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Infisical's API answers where it is asked; a redirect (an SSO proxy's login page) is an
    error, never followed with the token."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


def _message(raw: bytes) -> str:
    """Infisical's error body is {reqId, statusCode, message, error}; `message` may be a list
    (a validation failure's issues). One line, cut short."""
    try:
        body = json.loads(raw)
    except ValueError:
        return (raw.decode("utf-8", "replace").strip().splitlines() or ["no message"])[0][:200]
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, list):
        message = "; ".join(str(item.get("message", item)) if isinstance(item, dict) else str(item) for item in message)
    return str(message or body)[:200]


def _get(data: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise KeyError(".".join(path))
        data = data[key]
    return data


def _field(step: str, data: dict, *path: str) -> Any:
    try:
        return _get(data, *path)
    except KeyError as exc:
        raise ApiError(step, 200, f"the answer has no {exc.args[0]}") from None


# ------------------------------------------------------------------------------ instance

def initialized(api: Api) -> bool:
    """Has the instance its admin already? (`GET /api/v1/admin/config`, no auth)."""
    step = "ask whether Infisical is set up"
    return bool(_field(step, api.call(step, "GET", "/api/v1/admin/config"), "config", "initialized"))


@dataclass(frozen=True)
class Bootstrapped:
    organization_id: str
    token: Secret  # the instance-admin identity's token: never returned again


def bootstrap(api: Api, email: str, password: Secret, organization: str) -> Bootstrapped:
    step = "bootstrap the instance"
    answer = api.call(step, "POST", "/api/v1/admin/bootstrap",
                      {"email": email, "password": password.reveal(), "organization": organization})
    return Bootstrapped(str(_field(step, answer, "organization", "id")),
                        Secret(str(_field(step, answer, "identity", "credentials", "token"))))


# ------------------------------------------------------------------------------ projects

def project_slug(name: str) -> str:
    """The project's slug, fixed by its name, so a re-run finds the project it made: identity
    tokens cannot list projects at the pinned version (docs/infisical-api.md), but can read
    one by slug. Slugs are 5 to 36 characters of [a-z0-9-]."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "stack"
    if len(slug) < 5:
        slug += "-stack"
    return slug[:36].strip("-")


def find_project(api: Api, name: str) -> str | None:
    step = "look up the project"
    answer = api.get_or_none(step, f"/api/v2/workspace/{_id(project_slug(name))}")
    if answer is None:
        return None
    project = answer.get("project", answer)  # the bare project object at the pinned version
    return str(_field(step, project, "id"))


def create_project(api: Api, name: str) -> str:
    step = f"create project {name}"
    answer = api.call(step, "POST", "/api/v2/workspace", {"projectName": name, "slug": project_slug(name)})
    return str(_field(step, answer, "project", "id"))


# ------------------------------------------------------------------------------ identity

def find_identity(api: Api, organization_id: str, name: str = IDENTITY_NAME) -> str | None:
    step = "list machine identities"
    answer = api.call(step, "GET", "/api/v1/identities", query={"orgId": organization_id})
    for membership in _field(step, answer, "identities") or []:
        identity = membership.get("identity") if isinstance(membership, dict) else None
        if isinstance(identity, dict) and identity.get("name") == name:
            return str(identity.get("id"))
    return None


def create_identity(api: Api, organization_id: str, name: str = IDENTITY_NAME) -> str:
    step = f"create machine identity {name}"
    answer = api.call(step, "POST", "/api/v1/identities", {"name": name, "organizationId": organization_id,
                                                           "role": ORG_ROLE})
    return str(_field(step, answer, "identity", "id"))


def universal_auth_client_id(api: Api, identity_id: str) -> str | None:
    """The identity's Universal Auth client id, or None when it has none yet (404)."""
    step = "read the identity's Universal Auth"
    answer = api.get_or_none(step, f"/api/v1/auth/universal-auth/identities/{_id(identity_id)}")
    if answer is None:
        return None
    return str(_field(step, answer, "identityUniversalAuth", "clientId"))


# Universal Auth as attached: the access token lives 30 days (2592000 s, Infisical's
# default), may be renewed up to that, with no use limit; the launcher logs in afresh on
# every start, so a token never needs renewing.
ACCESS_TOKEN_TTL = 2592000


def attach_universal_auth(api: Api, identity_id: str) -> str:
    step = "give the identity Universal Auth"
    answer = api.call(step, "POST", f"/api/v1/auth/universal-auth/identities/{_id(identity_id)}",
                      {"accessTokenTTL": ACCESS_TOKEN_TTL, "accessTokenMaxTTL": ACCESS_TOKEN_TTL,
                       "accessTokenNumUsesLimit": 0})
    return str(_field(step, answer, "identityUniversalAuth", "clientId"))


def create_client_secret(api: Api, identity_id: str) -> Secret:
    """A client secret that never expires (ttl 0) and has no use limit (0): it is the one
    credential the launcher keeps, in `.env`."""
    step = "create a client secret"
    answer = api.call(step, "POST", f"/api/v1/auth/universal-auth/identities/{_id(identity_id)}/client-secrets",
                      {"description": "start_services.py setup", "numUsesLimit": 0, "ttl": 0})
    return Secret(str(_field(step, answer, "clientSecret")))


def is_member(api: Api, project_id: str, identity_id: str) -> bool:
    step = "list the project's identities"
    answer = api.call(step, "GET", f"/api/v2/workspace/{_id(project_id)}/identity-memberships")
    for membership in _field(step, answer, "identityMemberships") or []:
        if not isinstance(membership, dict):
            continue
        identity = membership.get("identity") or {}
        if str(membership.get("identityId") or identity.get("id")) == identity_id:
            return True
    return False


def add_member(api: Api, project_id: str, identity_id: str) -> None:
    step = "add the identity to the project"
    api.call(step, "POST", f"/api/v2/workspace/{_id(project_id)}/identity-memberships/{_id(identity_id)}",
             {"roles": [{"role": PROJECT_ROLE, "isTemporary": False}]})


def _id(value: str) -> str:
    """An id as one path segment (ids come from the server; never let one add a path)."""
    return urllib.parse.quote(value, safe="")
