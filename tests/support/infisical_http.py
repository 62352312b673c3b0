"""A fake of Infisical's REST API, for tests of the `setup` command. Stdlib only.

The routes, request fields, defaults, response fields and error answers are those of
Infisical's backend source near v0.146.0 (the tag infisical/docker-compose.yml pins);
docs/infisical-api.md says which file and version each comes from, and what is only
inferred. Answers marked "approximation" below could not be read from the source;
tests should not pin their text.

It SHARES STATE with the stand-in CLI (tests/support/bin/infisical): it reads and
writes the same JSON file ($FAKE_INFISICAL_DB, `FakeInfisical.db_path`), under the same
lock file (`<db>.lock`, fcntl) and with the same atomic rewrite. What it creates shows
up where the stand-in looks:

- a project (POST /api/v2/workspace) -> `projects[<id>]` with its environments
  (dev, staging, prod by default), each with the folder "/";
- a Universal Auth client secret -> `machine_identities[<clientId>] = {client_secret,
  token}` and `token` in `tokens`, so `infisical login --method=universal-auth` with
  that client id/secret prints `token`, and `infisical export --projectId=<id>` accepts
  it. One client id holds one secret for the stand-in: the newest one created.
- the bootstrap's instance-admin token -> `tokens` too (the real server lets the admin
  identity read the projects it created, as their admin).

Known gap: the stand-in checks only that a token is valid, not that its identity is a
member of the project it exports. Assert memberships through the HTTP state
(`http_memberships`) or GET .../identity-memberships.

Its own state lives in the same file under keys the stand-in ignores:

    "http_admin":          {"initialized": bool, "instanceId": str, "adminIdentityIds": [id]}
    "http_users":          {id: {id, username, email, firstName, lastName, superAdmin, passwordSha256}}
    "http_orgs":           {id: {id, name, slug, createdAt, updatedAt}}
    "http_identities":     {id: {id, name, orgId, orgRole, orgMembershipId, authMethods, createdAt, updatedAt}}
    "http_universal_auth": {identityId: {id, clientId, identityId, accessTokenTTL, ...}}
    "http_client_secrets": {id: {id, identityUAId, identityId, clientSecretSha256, clientSecretPrefix,
                                 description, clientSecretNumUses, clientSecretNumUsesLimit,
                                 clientSecretTTL, isClientSecretRevoked, createdAt, updatedAt}}
    "http_access_tokens":  {token: {identityId, authMethod: "token-auth"|"universal-auth"}}
    "http_projects":       {id: {id, _id, name, slug, orgId, type, environments, ...}}
    "http_memberships":    {projectId: {identityId: {id, projectId, identityId, roles: [...], ...}}}
    "http_options":        {"identity_project_list": "none" | "member"}   (see GET /api/v1/workspace)
    "http_fail":           failure injection, below
    "http_log":            [{"method", "path", "route", "status", "actor"}]  one per request,
                           never a body (no secrets)

Failure injection: `"http_fail": {"<METHOD> <route or path>": spec}`, the route as
written in ROUTES (e.g. "POST /api/v1/auth/universal-auth/identities/:identityId") or a
concrete path. spec is
    500                               -> answer 500 once, then behave normally
    {"status": 503, "times": 2}       -> twice ("times": "always" -> every time)
    {"status": 400, "message": "..."} -> that message in the error body
    {"delay": 3.0}                    -> wait 3 s first (then fail if "status" is given,
                                         else answer normally)
    {"drop": true}                    -> close the connection without an answer
A request that fails this way changes nothing else. `FakeInfisical.fail_http()` writes it.

The state's "server" mode (the stand-in's up | down | hang | garbage | empty) applies
here too: down -> the connection is closed unanswered, hang -> no answer until stop(),
garbage -> 502 with an HTML body, empty -> 200 with no body.

Auth: `Authorization: Bearer <token>`, the token being the bootstrap's
`identity.credentials.token` or an `accessToken` from POST /api/v1/auth/universal-auth/login
(fake opaque strings, not JWTs). No header -> 401 "Token missing"; an unknown token ->
403 TokenError (the real server's answer to a malformed JWT).

Running it: `FakeInfisicalHTTP(db_path).start()` binds 127.0.0.1 on a free port and
returns the base URL (give it to the launcher and the stand-in as INFISICAL_API_URL;
the stand-in appends /api). The busybox test image has no Python, so this server cannot
run as the stack's `infisical` container; tests run it on the host instead. As a pytest
fixture: `from support.infisical_http import infisical_http  # noqa: F401` in a test
module, which then takes `infisical_http` (it builds on conftest's `infisical_server`).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import string
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

ADMIN_CONFIG_ID = "00000000-0000-0000-0000-000000000000"
ADMIN_IDENTITY_NAME = "Instance Admin Identity"
DEFAULT_PROJECT_ENVS = (("Development", "dev"), ("Staging", "staging"), ("Production", "prod"))
ORG_ROLES = ("admin", "member", "no-access")
PROJECT_ROLES = ("admin", "member", "viewer", "no-access")
MAX_TTL = 315360000
DEFAULT_TOKEN_TTL = 2592000  # 30 days
OPEN_IPS = ("0.0.0.0/0", "::/0")
STORED_OPEN_IPS = [{"type": "ipv4", "prefix": 0, "ipAddress": "0.0.0.0"},
                   {"type": "ipv6", "prefix": 0, "ipAddress": "::"}]
HTTP_KEYS = ("http_admin", "http_users", "http_orgs", "http_identities", "http_universal_auth",
             "http_client_secrets", "http_access_tokens", "http_projects", "http_memberships",
             "http_options", "http_fail", "http_log")

_PROCESS_LOCK = threading.RLock()


# ---------------------------------------------------------------- shared state file

@contextlib.contextmanager
def locked_state(db_path: os.PathLike | str):
    """Read-modify-write of the state file: the stand-in CLI's protocol (flock on
    `<db>.lock`, then an atomic replace), plus a lock for this process's threads."""
    path = str(db_path)
    with _PROCESS_LOCK, open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        yield data
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".db-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
        os.replace(tmp, path)


def read_state(db_path: os.PathLike | str) -> dict[str, Any]:
    with open(db_path, encoding="utf-8") as f:
        return json.load(f)


def now_iso() -> str:
    """A JavaScript Date as JSON: 2025-08-08T12:00:00.000Z."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def nano_id(length: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def slugify(text: str) -> str:
    """Approximation of @sindresorhus/slugify: lower case, runs of other characters -> "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- errors and validation

class ApiError(Exception):
    """An error answer: {reqId, statusCode, message, error} (server/plugins/error-handler.ts)."""

    def __init__(self, status: int, message: Any, error: str, **extra: Any) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message
        self.error = error
        self.extra = extra


def bad_request(message: str, name: str = "BadRequest") -> ApiError:
    return ApiError(400, message, name)


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "NotFound")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "UnauthorizedError")


def forbidden(message: str = "You are not allowed to access this resource", name: str = "ForbiddenError") -> ApiError:
    return ApiError(403, message, name, details=None)


def permission_denied(action: str, subject: str) -> ApiError:
    """A CASL denial (ForbiddenError from @casl/ability)."""
    return ApiError(403, f"You are not allowed to {action} on {subject}", "PermissionDenied", details=[])


STATUS_NAMES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
                500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}
ERROR_NAMES = {400: "BadRequest", 401: "UnauthorizedError", 403: "ForbiddenError", 404: "NotFound",
               429: "RateLimitExceeded", 500: "InternalServerError", 504: "GatewayTimeoutError"}


def _zod_type(value: Any) -> str:
    if value is _MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Missing:
    pass


_MISSING = _Missing()


class Body:
    """A request body checked the way the route's zod schema checks it. Every failure
    becomes one zod issue; `done()` raises the 422 ValidationFailure with all of them."""

    def __init__(self, raw: Any) -> None:
        self.issues: list[dict[str, Any]] = []
        self.raw = raw
        if not isinstance(raw, dict):
            received = _zod_type(raw)
            self.issues.append({"code": "invalid_type", "expected": "object", "received": received,
                                "path": [], "message": "Required" if received == "undefined"
                                else f"Expected object, received {received}"})
            self.raw = {}

    def _get(self, key: str, default: Any) -> Any:
        value = self.raw.get(key, _MISSING)
        if value is _MISSING and default is not _MISSING:
            return default
        return value

    def _type_issue(self, key: str, expected: str, value: Any) -> None:
        received = _zod_type(value)
        self.issues.append({"code": "invalid_type", "expected": expected, "received": received,
                            "path": [key], "message": "Required" if received == "undefined"
                            else f"Expected {expected}, received {received}"})

    def string(self, key: str, default: Any = _MISSING, *, optional: bool = False, email: bool = False,
               min_length: int | None = None, max_length: int | None = None, trim: bool = True) -> Any:
        value = self._get(key, default)
        if value is _MISSING and optional:
            return None
        if not isinstance(value, str):
            self._type_issue(key, "string", value)
            return None
        if email and not EMAIL.match(value):
            self.issues.append({"validation": "email", "code": "invalid_string", "message": "Invalid email",
                                "path": [key]})
        if trim:
            value = value.strip()
        if min_length is not None and len(value) < min_length:
            self.issues.append({"code": "too_small", "minimum": min_length, "type": "string", "inclusive": True,
                                "exact": False, "message": f"String must contain at least {min_length} character(s)",
                                "path": [key]})
        if max_length is not None and len(value) > max_length:
            self.issues.append({"code": "too_big", "maximum": max_length, "type": "string", "inclusive": True,
                                "exact": False, "message": f"String must contain at most {max_length} character(s)",
                                "path": [key]})
        return value

    def number(self, key: str, default: Any = _MISSING, *, integer: bool = False, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._type_issue(key, "number", value)
            return None
        if integer and value != int(value):
            self.issues.append({"code": "invalid_type", "expected": "integer", "received": "float",
                                "path": [key], "message": "Expected integer, received float"})
        if minimum is not None and value < minimum:
            self.issues.append({"code": "too_small", "minimum": minimum, "type": "number", "inclusive": True,
                                "exact": False, "message": f"Number must be greater than or equal to {minimum}",
                                "path": [key]})
        if maximum is not None and value > maximum:
            self.issues.append({"code": "too_big", "maximum": maximum, "type": "number", "inclusive": True,
                                "exact": False, "message": f"Number must be less than or equal to {maximum}",
                                "path": [key]})
        return int(value) if integer and value == int(value) else value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self._type_issue(key, "boolean", value)
            return None
        return value

    def slug(self, key: str, *, optional: bool = False, min_length: int = 5, max_length: int = 36) -> Any:
        value = self.string(key, optional=optional, min_length=min_length, max_length=max_length)
        if isinstance(value, str) and value and not SLUG.match(value):
            self.issues.append({"code": "custom", "path": [key],  # approximation of slugSchema's text
                                "message": "Slug field can only contain lowercase letters, numbers, and hyphens"})
        return value

    def custom(self, message: str, path: list | None = None) -> None:
        self.issues.append({"code": "custom", "message": message, "path": path or []})

    def done(self) -> None:
        if self.issues:
            raise ApiError(422, self.issues, "ValidationFailure")


# zod's email regex (v3.22+), case-insensitive.
EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)([A-Z0-9_'+\-\.]*)[A-Z0-9_+-]@([A-Z0-9][A-Z0-9\-]*\.)+[A-Z]{2,}$", re.I)
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


# ---------------------------------------------------------------- request context

class Request:
    def __init__(self, method: str, path: str, query: dict[str, str], headers: Any, raw_body: bytes | None,
                 state: dict[str, Any], params: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.raw_body = raw_body
        self.state = state
        self.params = params
        self.actor: dict[str, Any] | None = None

    # -- state shortcuts
    def table(self, key: str) -> dict[str, Any]:
        return self.state.setdefault(key, {})

    @property
    def admin(self) -> dict[str, Any]:
        admin = self.state.setdefault("http_admin", {})
        admin.setdefault("initialized", False)
        admin.setdefault("instanceId", new_id())
        admin.setdefault("adminIdentityIds", [])
        return admin

    # -- auth (server/plugins/auth/verify-auth.ts)
    def authenticate(self) -> dict[str, Any]:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not header or scheme.lower() != "bearer" or not token:
            raise unauthorized("Token missing")
        record = self.table("http_access_tokens").get(token)
        identity = self.table("http_identities").get((record or {}).get("identityId", ""))
        if identity is None:
            raise ApiError(403, "The provided access token is malformed. Please use a valid token or generate "
                                "a new one and try again.", "TokenError")
        self.actor = identity
        return identity

    # -- the body, parsed once auth has passed (Fastify parses after onRequest)
    def body(self) -> Body:
        if not self.raw_body:
            return Body(_MISSING)
        try:
            return Body(json.loads(self.raw_body.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            # Fastify's content-type parser error; approximation of the text.
            raise ApiError(400, "Body is not valid JSON but content-type is set to 'application/json'",
                           "Bad Request") from None

    # -- permissions
    def require_org_role(self, roles: tuple[str, ...], action: str, subject: str, org_id: str | None = None) -> None:
        actor = self.actor or {}
        if org_id is not None and actor.get("orgId") != org_id:
            # permission service: the actor has no membership in that organization (approximation)
            raise forbidden()
        if actor.get("orgRole") not in roles:
            raise permission_denied(action, subject)

    def project(self, project_id: str) -> dict[str, Any]:
        project = self.table("http_projects").get(project_id)
        if project is None:
            raise not_found(f"Project with ID '{project_id}' not found")  # approximation of the text
        return project

    def project_roles(self, project: dict[str, Any]) -> list[str]:
        """The actor's roles in the project; 403 when it is no member (approximation of the text)."""
        actor = self.actor or {}
        membership = self.table("http_memberships").get(project["id"], {}).get(actor.get("id", ""))
        if actor.get("orgId") != project["orgId"] or membership is None:
            raise forbidden(f"Identity with ID '{actor.get('id')}' is not a member of the project")
        return [r["role"] for r in membership["roles"]]


# ---------------------------------------------------------------- shapes

def public_identity(identity: dict[str, Any]) -> dict[str, Any]:
    return {"id": identity["id"], "name": identity["name"], "orgId": identity["orgId"],
            "authMethods": list(identity["authMethods"]), "hasDeleteProtection": False,
            "createdAt": identity["createdAt"], "updatedAt": identity["updatedAt"]}


def org_identity_membership(identity: dict[str, Any]) -> dict[str, Any]:
    return {"id": identity["orgMembershipId"], "role": identity["orgRole"], "roleId": None,
            "orgId": identity["orgId"], "identityId": identity["id"], "createdAt": identity["createdAt"],
            "updatedAt": identity["updatedAt"],
            "identity": {"id": identity["id"], "name": identity["name"], "authMethods": list(identity["authMethods"])}}


def public_client_secret(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "createdAt", "updatedAt", "description", "clientSecretPrefix", "clientSecretNumUses",
            "clientSecretNumUsesLimit", "clientSecretTTL", "identityUAId", "isClientSecretRevoked")
    return {k: record[k] for k in keys}


def membership_role(role: str, now: str) -> dict[str, Any]:
    return {"id": new_id(), "role": role, "customRoleId": None, "customRoleName": None, "customRoleSlug": None,
            "isTemporary": False, "temporaryMode": None, "temporaryRange": None,
            "temporaryAccessStartTime": None, "temporaryAccessEndTime": None, "createdAt": now, "updatedAt": now}


# ---------------------------------------------------------------- routes

def route_status(req: Request) -> Any:
    """server/routes/index.ts: no auth."""
    return {"date": now_iso(), "message": "Ok", "emailConfigured": False, "inviteOnlySignup": False,
            "redisConfigured": True, "secretScanningConfigured": False, "auditLogStorageDisabled": False}


def route_admin_config(req: Request) -> Any:
    """v1/admin-router.ts GET /config: no auth; `config.initialized` says bootstrapped."""
    admin = req.admin
    return {"config": {"id": ADMIN_CONFIG_ID, "initialized": admin["initialized"], "allowSignUp": True,
                       "allowedSignUpDomain": None, "instanceId": admin["instanceId"], "trustSamlEmails": False,
                       "trustLdapEmails": False, "trustOidcEmails": False, "defaultAuthOrgId": None,
                       "enabledLoginMethods": None, "adminIdentityIds": list(admin["adminIdentityIds"]),
                       "isMigrationModeOn": False, "defaultAuthOrgSlug": None, "defaultAuthOrgAuthEnforced": False,
                       "defaultAuthOrgAuthMethod": None, "isSecretScanningDisabled": False}}


def route_bootstrap(req: Request) -> Any:
    """v1/admin-router.ts POST /bootstrap + super-admin-service.ts bootstrapInstance: no auth."""
    body = req.body()
    email = body.string("email", email=True, min_length=1)
    password = body.string("password", min_length=1)
    organization = body.string("organization", min_length=1)
    body.done()
    admin = req.admin
    if admin["initialized"]:
        raise bad_request("Instance has already been set up")
    email = email.strip().lower()
    users = req.table("http_users")
    if any(u["email"] == email for u in users.values()):
        raise bad_request("User already exists", name="Instance initialization")
    now = now_iso()
    user = {"id": new_id(), "username": email, "email": email, "firstName": "Admin", "lastName": "User",
            "superAdmin": True, "passwordSha256": sha256(password)}
    users[user["id"]] = user
    org = {"id": new_id(), "name": organization, "slug": f"{slugify(organization) or 'org'}-{nano_id(4)}",
           "createdAt": now, "updatedAt": now}
    req.table("http_orgs")[org["id"]] = org
    identity = {"id": new_id(), "name": ADMIN_IDENTITY_NAME, "orgId": org["id"], "orgRole": "admin",
                "orgMembershipId": new_id(), "authMethods": ["token-auth"], "createdAt": now, "updatedAt": now}
    req.table("http_identities")[identity["id"]] = identity
    token = f"fake-admin-token.{secrets.token_hex(24)}"  # a JWT that never expires, on the real server
    req.table("http_access_tokens")[token] = {"identityId": identity["id"], "authMethod": "token-auth"}
    tokens = req.state.setdefault("tokens", [])
    if token not in tokens:
        tokens.append(token)
    admin.update(initialized=True, adminIdentityIds=[identity["id"]])
    return {"message": "Successfully bootstrapped instance",
            "user": {k: user[k] for k in ("id", "username", "email", "firstName", "lastName", "superAdmin")},
            "organization": {"id": org["id"], "name": org["name"], "slug": org["slug"]},
            "identity": {"id": identity["id"], "name": identity["name"], "credentials": {"token": token}}}


def route_list_workspaces(req: Request) -> Any:
    """v1/project-router.ts GET / (JWT, API key, identity token) -> {workspaces}.

    The 2025 project-service.ts read (getProjects) asks findUserProjects(actorId) for every
    actor, so an identity gets no projects; later versions ask findIdentityProjects for
    identities. "http_options": {"identity_project_list": "member"} switches to that."""
    actor = req.authenticate()
    mode = req.state.get("http_options", {}).get("identity_project_list", "none")
    if mode != "member":
        return {"workspaces": []}
    memberships = req.table("http_memberships")
    workspaces = [p for p in req.table("http_projects").values()
                  if p["orgId"] == actor["orgId"] and actor["id"] in memberships.get(p["id"], {})]
    return {"workspaces": sorted(workspaces, key=lambda p: p["name"])}


def route_get_workspace(req: Request) -> Any:
    """v1/project-router.ts GET /:workspaceId (JWT, service token, identity token) -> {workspace}."""
    req.authenticate()
    project = req.project(req.params["workspaceId"])
    req.project_roles(project)
    return {"workspace": project}


def route_create_project(req: Request) -> Any:
    """v2/project-router.ts POST / + project-service.ts createProject (identity token or JWT)."""
    actor = req.authenticate()
    body = req.body()
    name = body.string("projectName")
    description = body.string("projectDescription", optional=True)
    slug = body.slug("slug", optional=True)
    body.string("kmsKeyId", optional=True)
    template = body.string("template", "default")
    project_type = body.string("type", "secret-manager")
    create_envs = body.boolean("shouldCreateDefaultEnvs", True)
    body.boolean("hasDeleteProtection", False)
    body.done()
    req.require_org_role(("admin", "member"), "create", "workspace")
    if template != "default":
        raise not_found(f"Project template with name '{template}' not found")  # approximation
    projects = req.table("http_projects")
    slug = slug or f"{slugify(name) or 'project'}-{nano_id(4)}"
    if any(p["slug"] == slug and p["orgId"] == actor["orgId"] for p in projects.values()):
        # No pre-check in the 2025 service: the unique index fails the insert, a DatabaseError,
        # which error-handler.ts answers 500 "Something went wrong" (inferred).
        raise ApiError(500, "Something went wrong", "DatabaseError")
    now = now_iso()
    envs = [{"id": new_id(), "name": n, "slug": s} for n, s in DEFAULT_PROJECT_ENVS] if create_envs else []
    project_id = new_id()
    project = {"id": project_id, "_id": project_id, "name": name, "slug": slug, "description": description,
               "orgId": actor["orgId"], "type": project_type, "version": 3, "autoCapitalization": False,
               "pitVersionLimit": 10, "kmsSecretManagerKeyId": None, "hasDeleteProtection": False,
               "createdAt": now, "updatedAt": now, "environments": envs}
    projects[project_id] = project
    # "If the project is being created by an identity, add the identity to the project as an admin"
    req.table("http_memberships").setdefault(project_id, {})[actor["id"]] = {
        "id": new_id(), "projectId": project_id, "identityId": actor["id"], "createdAt": now, "updatedAt": now,
        "roles": [membership_role("admin", now)]}
    # What the stand-in CLI reads: projects[id][env]["/"].
    req.state.setdefault("projects", {})[project_id] = {env["slug"]: {"/": {}} for env in envs}
    return {"project": project}


def route_get_project_by_slug(req: Request) -> Any:
    """v2/project-router.ts GET /:slug (JWT, identity token) -> the project itself, unwrapped."""
    actor = req.authenticate()
    body = Body({"slug": req.params["slug"]})
    slug = body.slug("slug")
    body.done()
    project = next((p for p in req.table("http_projects").values()
                    if p["slug"] == slug and p["orgId"] == actor["orgId"]), None)
    if project is None:
        raise not_found(f"Project with slug '{slug}' not found")  # approximation of the text
    req.project_roles(project)
    return project


def route_list_identities(req: Request) -> Any:
    """v1/identity-router.ts GET /?orgId= -> {identities: [org membership + identity], totalCount}."""
    req.authenticate()
    body = Body(dict(req.query))
    org_id = body.string("orgId", trim=False)
    body.done()
    req.require_org_role(("admin", "member"), "read", "identity", org_id)
    rows = [org_identity_membership(i) for i in req.table("http_identities").values() if i["orgId"] == org_id]
    rows.sort(key=lambda r: r["identity"]["name"])
    return {"identities": rows, "totalCount": len(rows)}


def route_create_identity(req: Request) -> Any:
    """v1/identity-router.ts POST / {name, organizationId, role ("no-access")} -> {identity}."""
    req.authenticate()
    body = req.body()
    name = body.string("name")
    org_id = body.string("organizationId")
    role = body.string("role", "no-access", min_length=1)
    body.done()
    req.require_org_role(("admin",), "create", "identity", org_id)
    if role not in ORG_ROLES:
        raise not_found(f"Organization role with slug '{role}' not found")  # approximation
    now = now_iso()
    identity = {"id": new_id(), "name": name, "orgId": org_id, "orgRole": role, "orgMembershipId": new_id(),
                "authMethods": [], "createdAt": now, "updatedAt": now}
    req.table("http_identities")[identity["id"]] = identity
    return {"identity": public_identity(identity)}


def _identity(req: Request) -> dict[str, Any]:
    identity_id = req.params["identityId"]
    identity = req.table("http_identities").get(identity_id)
    if identity is None:
        raise not_found(f"Failed to find identity with ID {identity_id}")
    return identity


def route_attach_universal_auth(req: Request) -> Any:
    """v1/identity-universal-auth-router.ts POST /universal-auth/identities/:identityId
    + identity-ua-service.ts attachUniversalAuth."""
    req.authenticate()
    body = req.body()
    ttl = body.number("accessTokenTTL", DEFAULT_TOKEN_TTL, integer=True, minimum=0, maximum=MAX_TTL)
    max_ttl = body.number("accessTokenMaxTTL", DEFAULT_TOKEN_TTL, integer=True, minimum=0, maximum=MAX_TTL)
    uses = body.number("accessTokenNumUsesLimit", 0, integer=True, minimum=0)
    period = body.number("accessTokenPeriod", 0, integer=True, minimum=0)
    trusted = {}
    for key in ("clientSecretTrustedIps", "accessTokenTrustedIps"):
        value = body.raw.get(key, [{"ipAddress": ip} for ip in OPEN_IPS])
        if not isinstance(value, list) or not value or not all(
                isinstance(v, dict) and isinstance(v.get("ipAddress"), str) for v in value):
            body.custom(f"Invalid {key}", [key])  # approximation of zod's issue
            value = []
        trusted[key] = value
    if not body.issues and ttl > max_ttl:
        body.custom("Access Token TTL cannot be greater than Access Token Max TTL.")
    body.done()
    identity = _identity(req)
    if "universal-auth" in identity["authMethods"]:
        raise bad_request("Failed to add universal auth to already configured identity")
    req.require_org_role(("admin",), "create", "identity", identity["orgId"])
    for key, entries in trusted.items():
        if any(e["ipAddress"].strip() not in OPEN_IPS for e in entries):
            raise bad_request("Failed to add IP access range to service token due to plan restriction. "
                              "Upgrade plan to add IP access range.")
    now = now_iso()
    record = {"id": new_id(), "clientId": new_id(), "identityId": identity["id"], "accessTokenTTL": ttl,
              "accessTokenMaxTTL": max_ttl, "accessTokenNumUsesLimit": uses, "accessTokenPeriod": period,
              "accessTokenTrustedIps": STORED_OPEN_IPS, "clientSecretTrustedIps": STORED_OPEN_IPS,
              "createdAt": now, "updatedAt": now}
    req.table("http_universal_auth")[identity["id"]] = record
    identity["authMethods"].append("universal-auth")
    identity["updatedAt"] = now
    return {"identityUniversalAuth": dict(record)}


def _universal_auth(req: Request, identity: dict[str, Any], missing: str) -> dict[str, Any]:
    record = req.table("http_universal_auth").get(identity["id"])
    if record is None or "universal-auth" not in identity["authMethods"]:
        if missing == "not_found":
            raise not_found(f"Failed to find universal auth for identity with ID {identity['id']}")
        raise bad_request("The identity does not have universal auth")
    return record


def route_get_universal_auth(req: Request) -> Any:
    req.authenticate()
    identity = _identity(req)
    record = _universal_auth(req, identity, "not_found")
    req.require_org_role(("admin", "member"), "read", "identity", identity["orgId"])
    return {"identityUniversalAuth": dict(record)}


def route_create_client_secret(req: Request) -> Any:
    """... /client-secrets POST {description (""), numUsesLimit (0), ttl (0)}: the secret is
    32 random bytes as 64 hex characters, returned once; only its hash and prefix are kept."""
    req.authenticate()
    body = req.body()
    description = body.string("description", "")
    uses_limit = body.number("numUsesLimit", 0, minimum=0)
    ttl = body.number("ttl", 0, minimum=0, maximum=MAX_TTL)
    body.done()
    identity = _identity(req)
    ua = _universal_auth(req, identity, "bad_request")
    req.require_org_role(("admin",), "create", "identity", identity["orgId"])
    secret = secrets.token_hex(32)
    now = now_iso()
    record = {"id": new_id(), "identityUAId": ua["id"], "identityId": identity["id"], "description": description,
              "clientSecretPrefix": secret[:4], "clientSecretSha256": sha256(secret), "clientSecretNumUses": 0,
              "clientSecretNumUsesLimit": uses_limit, "clientSecretTTL": ttl, "isClientSecretRevoked": False,
              "createdAt": now, "updatedAt": now}
    req.table("http_client_secrets")[record["id"]] = record
    # What the stand-in CLI reads: one secret per client id (the newest) and its token.
    machine = req.state.setdefault("machine_identities", {})
    token = (machine.get(ua["clientId"]) or {}).get("token") or f"fake-ua-token.{secrets.token_hex(24)}"
    machine[ua["clientId"]] = {"client_secret": secret, "token": token}
    tokens = req.state.setdefault("tokens", [])
    if token not in tokens:
        tokens.append(token)
    req.table("http_access_tokens")[token] = {"identityId": identity["id"], "authMethod": "universal-auth"}
    return {"clientSecret": secret, "clientSecretData": public_client_secret(record)}


def route_list_client_secrets(req: Request) -> Any:
    req.authenticate()
    identity = _identity(req)
    ua = _universal_auth(req, identity, "bad_request")
    req.require_org_role(("admin", "member"), "read", "identity", identity["orgId"])
    rows = [public_client_secret(r) for r in req.table("http_client_secrets").values()
            if r["identityUAId"] == ua["id"] and not r["isClientSecretRevoked"]]
    return {"clientSecretData": rows}


def _revoke(req: Request, record: dict[str, Any], client_id: str) -> None:
    record["isClientSecretRevoked"] = True
    record["updatedAt"] = now_iso()
    machine = req.state.get("machine_identities", {})
    if sha256((machine.get(client_id) or {}).get("client_secret", "")) == record["clientSecretSha256"]:
        del machine[client_id]


def route_universal_auth_login(req: Request) -> Any:
    """... POST /universal-auth/login {clientId, clientSecret}: no auth.
    -> {accessToken, expiresIn (the identity's accessTokenTTL), accessTokenMaxTTL, tokenType}.
    One token per identity, reused by every login (the real server signs a new JWT each time)."""
    body = req.body()
    client_id = body.string("clientId")
    secret = body.string("clientSecret")
    body.done()
    ua = next((u for u in req.table("http_universal_auth").values() if u["clientId"] == client_id), None)
    if ua is None:
        raise not_found("No identity with specified client ID was found")
    record = next((r for r in req.table("http_client_secrets").values()
                   if r["identityUAId"] == ua["id"] and not r["isClientSecretRevoked"]
                   and r["clientSecretPrefix"] == secret[:4] and r["clientSecretSha256"] == sha256(secret)), None)
    if record is None:
        raise unauthorized("Invalid credentials")
    if record["clientSecretTTL"] > 0:
        created = datetime.datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
        if datetime.datetime.now(datetime.timezone.utc) > created + datetime.timedelta(seconds=record["clientSecretTTL"]):
            _revoke(req, record, client_id)
            raise unauthorized("Access denied due to expired client secret")
    if record["clientSecretNumUsesLimit"] > 0 and record["clientSecretNumUses"] >= record["clientSecretNumUsesLimit"]:
        _revoke(req, record, client_id)
        raise unauthorized("Access denied due to client secret usage limit reached")
    record["clientSecretNumUses"] += 1
    machine = req.state.setdefault("machine_identities", {})
    token = (machine.get(client_id) or {}).get("token")
    if not token:
        token = next((t for t, a in req.table("http_access_tokens").items()
                      if a["identityId"] == ua["identityId"] and a["authMethod"] == "universal-auth"),
                     f"fake-ua-token.{secrets.token_hex(24)}")
    req.table("http_access_tokens")[token] = {"identityId": ua["identityId"], "authMethod": "universal-auth"}
    tokens = req.state.setdefault("tokens", [])
    if token not in tokens:
        tokens.append(token)
    ttl, max_ttl = ua["accessTokenTTL"], ua["accessTokenMaxTTL"]
    if ua.get("accessTokenPeriod"):
        ttl, max_ttl = ua["accessTokenPeriod"], 1000000000
    return {"accessToken": token, "expiresIn": ttl, "accessTokenMaxTTL": max_ttl, "tokenType": "Bearer"}


def route_list_identity_memberships(req: Request) -> Any:
    """v2/identity-project-router.ts GET /:projectId/identity-memberships."""
    req.authenticate()
    project = req.project(req.params["projectId"])
    roles = req.project_roles(project)
    if not set(roles) & {"admin", "member", "viewer"}:
        raise permission_denied("read", "identity")
    identities = req.table("http_identities")
    rows = []
    for identity_id, membership in req.table("http_memberships").get(project["id"], {}).items():
        identity = identities.get(identity_id, {"id": identity_id, "name": "", "authMethods": []})
        rows.append({"id": membership["id"], "identityId": identity_id, "createdAt": membership["createdAt"],
                     "updatedAt": membership["updatedAt"], "roles": membership["roles"],
                     "identity": {"id": identity["id"], "name": identity["name"],
                                  "authMethods": list(identity["authMethods"])},
                     "project": {"id": project["id"], "name": project["name"]}})
    rows.sort(key=lambda r: r["identity"]["name"])
    return {"identityMemberships": rows, "totalCount": len(rows)}


def route_add_identity_membership(req: Request) -> Any:
    """v2/identity-project-router.ts POST /:projectId/identity-memberships/:identityId
    {role? (deprecated, default "no-access"), roles?: [{role, isTemporary: false}]}.
    Note the default: a body without `roles` adds the identity with the role no-access."""
    req.authenticate()
    body = req.body()
    role = body.string("role", "no-access")
    roles_raw = body.raw.get("roles", _MISSING)
    requested: list[str] = []
    if roles_raw is not _MISSING:
        if not isinstance(roles_raw, list):
            body._type_issue("roles", "array", roles_raw)
        for i, entry in enumerate(roles_raw if isinstance(roles_raw, list) else []):
            if not isinstance(entry, dict) or not isinstance(entry.get("role"), str):
                body.issues.append({"code": "invalid_union", "path": ["roles", i], "message": "Invalid input"})
                continue
            temporary = entry.get("isTemporary", False)
            if temporary is True and not all(isinstance(entry.get(k), str) for k in (
                    "temporaryMode", "temporaryRange", "temporaryAccessStartTime")):
                body.issues.append({"code": "invalid_union", "path": ["roles", i], "message": "Invalid input"})
                continue
            if temporary not in (True, False):
                body.issues.append({"code": "invalid_union", "path": ["roles", i], "message": "Invalid input"})
                continue
            requested.append(entry["role"])
    body.done()
    if roles_raw is _MISSING:
        requested = [role]
    project = req.project(req.params["projectId"])
    actor_roles = req.project_roles(project)
    if "admin" not in actor_roles:
        raise permission_denied("create", "identity")
    identity_id = req.params["identityId"]
    members = req.table("http_memberships").setdefault(project["id"], {})
    if identity_id in members:
        raise bad_request(f"Identity with id {identity_id} already exists in project with id {project['id']}")
    identity = req.table("http_identities").get(identity_id)
    if identity is None or identity["orgId"] != project["orgId"]:
        raise bad_request(f"Failed to find identity with id {identity_id}")
    for slug in requested:
        if slug not in PROJECT_ROLES:
            raise not_found(f"Project role with slug '{slug}' not found")  # approximation
    now = now_iso()
    membership = {"id": new_id(), "projectId": project["id"], "identityId": identity_id, "createdAt": now,
                  "updatedAt": now, "roles": [membership_role(slug, now) for slug in requested]}
    members[identity_id] = membership
    return {"identityMembership": {k: membership[k] for k in ("id", "projectId", "identityId", "createdAt", "updatedAt")}}


# (method, route as written, handler). ":name" matches one path segment.
ROUTES: list[tuple[str, str, Callable[[Request], Any]]] = [
    ("GET", "/api/status", route_status),
    ("GET", "/api/v1/admin/config", route_admin_config),
    ("POST", "/api/v1/admin/bootstrap", route_bootstrap),
    ("GET", "/api/v1/workspace", route_list_workspaces),
    ("GET", "/api/v1/workspace/:workspaceId", route_get_workspace),
    ("POST", "/api/v2/workspace", route_create_project),
    ("GET", "/api/v2/workspace/:slug", route_get_project_by_slug),
    ("GET", "/api/v1/identities", route_list_identities),
    ("POST", "/api/v1/identities", route_create_identity),
    ("POST", "/api/v1/auth/universal-auth/login", route_universal_auth_login),
    ("POST", "/api/v1/auth/universal-auth/identities/:identityId", route_attach_universal_auth),
    ("GET", "/api/v1/auth/universal-auth/identities/:identityId", route_get_universal_auth),
    ("POST", "/api/v1/auth/universal-auth/identities/:identityId/client-secrets", route_create_client_secret),
    ("GET", "/api/v1/auth/universal-auth/identities/:identityId/client-secrets", route_list_client_secrets),
    ("GET", "/api/v2/workspace/:projectId/identity-memberships", route_list_identity_memberships),
    ("POST", "/api/v2/workspace/:projectId/identity-memberships/:identityId", route_add_identity_membership),
]


def _compile(template: str) -> re.Pattern[str]:
    parts = [f"(?P<{p[1:]}>[^/]+)" if p.startswith(":") else re.escape(p) for p in template.strip("/").split("/")]
    return re.compile("^/" + "/".join(parts) + "/?$")


_COMPILED = [(method, template, _compile(template), handler) for method, template, handler in ROUTES]


def match_route(method: str, path: str) -> tuple[str, Callable[[Request], Any], dict[str, str]] | None:
    for route_method, template, pattern, handler in _COMPILED:
        found = pattern.match(path)
        if found and route_method == method:
            return template, handler, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
    return None


# ---------------------------------------------------------------- failure injection

def take_failure(state: dict[str, Any], method: str, template: str | None, path: str) -> dict[str, Any] | None:
    """The injected failure for this request, if any; counts it down (under the lock)."""
    table = state.get("http_fail") or {}
    for key in (f"{method} {template}" if template else None, f"{method} {path}"):
        if key is None or key not in table:
            continue
        spec = table[key]
        spec = {"status": spec} if isinstance(spec, int) else dict(spec)
        times = spec.get("times", 1)
        if times != "always":
            times = int(times) - 1
            if times <= 0:
                del table[key]
            else:
                table[key] = {**spec, "times": times}
        return spec
    return None


# ---------------------------------------------------------------- the server

def _req_id() -> str:
    return "req-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(14))


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-infisical"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def _send(self, status: int, payload: Any, content_type: str = "application/json; charset=utf-8") -> None:
        data = b"" if payload is None else (
            payload.encode("utf-8") if isinstance(payload, str) else json.dumps(payload).encode("utf-8"))
        self.send_response(status, STATUS_NAMES.get(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, method: str) -> None:
        fake: FakeInfisicalHTTP = self.server.fake  # type: ignore[attr-defined]
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else None
        req_id = _req_id()

        mode = read_state(fake.db_path).get("server", "up")
        if mode == "down":
            return self._drop()
        if mode == "hang":
            fake._stopping.wait()
            return self._drop()
        if mode == "garbage":
            return self._send(502, "<html><body><h1>502 Bad Gateway</h1></body></html>\n", "text/html")
        if mode == "empty":
            return self._send(200, None)

        found = match_route(method, path)
        template, handler, params = found if found else (None, None, {})
        with locked_state(fake.db_path) as state:
            failure = take_failure(state, method, template, path)
        if failure and failure.get("delay"):
            fake._stopping.wait(float(failure["delay"]))
        if failure and failure.get("drop"):
            self._log(method, path, template, None, None)
            return self._drop()
        if failure and failure.get("status"):
            status = int(failure["status"])
            body = failure.get("body") or {
                "reqId": req_id, "statusCode": status,
                "message": failure.get("message", "Something went wrong" if status >= 500 else STATUS_NAMES.get(status, "")),
                "error": failure.get("error", ERROR_NAMES.get(status, STATUS_NAMES.get(status, "Error")))}
            self._log(method, path, template, status, None)
            return self._send(status, body)

        if handler is None:
            # Fastify's own 404 for an unknown route.
            status, body, actor = 404, {"message": f"Route {method}:{path} not found", "error": "Not Found",
                                        "statusCode": 404}, None
        else:
            with locked_state(fake.db_path) as state:
                req = Request(method, path, query, self.headers, raw_body, state, params)
                try:
                    status, body = 200, handler(req)
                except ApiError as exc:
                    status = exc.status
                    body = {"reqId": req_id, "statusCode": exc.status, "message": exc.message, "error": exc.error}
                    body.update({k: v for k, v in exc.extra.items()})
                actor = (req.actor or {}).get("id")
                _append_log(state, method, path, template, status, actor)
            return self._send(status, body)
        self._log(method, path, template, status, actor)
        return self._send(status, body)

    def _log(self, method: str, path: str, template: str | None, status: int | None, actor: str | None) -> None:
        fake: FakeInfisicalHTTP = self.server.fake  # type: ignore[attr-defined]
        with locked_state(fake.db_path) as state:
            _append_log(state, method, path, template, status, actor)


def _append_log(state: dict[str, Any], method: str, path: str, template: str | None, status: int | None,
                actor: str | None) -> None:
    state.setdefault("http_log", []).append(
        {"method": method, "path": path, "route": template, "status": status, "actor": actor})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeInfisicalHTTP:
    """Infisical's REST API over the stand-in's state file.

        server = FakeInfisicalHTTP(fake.db_path)
        base = server.start()            # "http://127.0.0.1:<port>"
        status, body = server.request("POST", "/api/v1/admin/bootstrap", {...})
        server.stop()

    or `with FakeInfisicalHTTP(path) as server: ...`.
    """

    def __init__(self, db_path: os.PathLike | str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.db_path = Path(db_path)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def base_url(self) -> str:
        """The instance URL, as a user would give it (no /api): INFISICAL_API_URL."""
        if self._server is None:
            raise RuntimeError("the fake Infisical HTTP server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api"

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-infisical-http-{self.port}", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # releases handlers held by "hang" or "delay"
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeInfisicalHTTP":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def cli_env(self, env: dict[str, str], **extra: str) -> dict[str, str]:
        """A copy of `env` (e.g. FakeInfisical.env) that points the stand-in at this server."""
        return {**env, "INFISICAL_API_URL": self.base_url, "INFISICAL_DISABLE_UPDATE_CHECK": "true", **extra}

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                timeout: float = 10, raw: bytes | None = None) -> tuple[int, Any]:
        """One call from a test: (status, parsed JSON body or None)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if not payload:
            return status, None
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    def state(self) -> dict[str, Any]:
        return read_state(self.db_path)


try:  # a fixture for test modules: `from support.infisical_http import infisical_http`
    import pytest
except ImportError:  # pragma: no cover - the support module works without pytest too
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def infisical_http(infisical_server):
        """A running FakeInfisicalHTTP over the `infisical_server` fixture's state file."""
        with FakeInfisicalHTTP(infisical_server.db_path) as server:
            yield server
