"""The fake Infisical REST API (tests/support/infisical_http.py) behaves as Infisical's
backend source says (docs/infisical-api.md), and what it creates works with the stand-in
CLI: an identity made over HTTP logs in and exports through `infisical`."""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from support.infisical_http import ROUTES, FakeInfisicalHTTP, infisical_http  # noqa: F401 - fixture

ADMIN = {"email": "Admin@Example.com", "password": "correct horse", "organization": "Local AI"}


# ------------------------------------------------------------------ helpers

def bootstrap(http: FakeInfisicalHTTP) -> tuple[str, str]:
    """Bootstrap the instance: (the instance-admin token, the organization id)."""
    status, body = http.request("POST", "/api/v1/admin/bootstrap", ADMIN)
    assert status == 200, body
    return body["identity"]["credentials"]["token"], body["organization"]["id"]


def create_project(http: FakeInfisicalHTTP, token: str, slug: str = "localai-stack") -> dict:
    status, body = http.request("POST", "/api/v2/workspace", {"projectName": "localai", "slug": slug}, token=token)
    assert status == 200, body
    return body["project"]


def machine_identity(http: FakeInfisicalHTTP, token: str, org_id: str, name: str = "start-services",
                     **secret_body) -> tuple[str, str, str]:
    """An identity with Universal Auth and one client secret: (identity id, client id, secret)."""
    status, body = http.request("POST", "/api/v1/identities",
                                {"name": name, "organizationId": org_id, "role": "no-access"}, token=token)
    assert status == 200, body
    identity_id = body["identity"]["id"]
    status, body = http.request("POST", f"/api/v1/auth/universal-auth/identities/{identity_id}", {}, token=token)
    assert status == 200, body
    client_id = body["identityUniversalAuth"]["clientId"]
    status, body = http.request("POST", f"/api/v1/auth/universal-auth/identities/{identity_id}/client-secrets",
                                {"description": "start-services", **secret_body}, token=token)
    assert status == 200, body
    return identity_id, client_id, body["clientSecret"]


def add_member(http: FakeInfisicalHTTP, token: str, project_id: str, identity_id: str, role: str = "member"):
    return http.request("POST", f"/api/v2/workspace/{project_id}/identity-memberships/{identity_id}",
                        {"roles": [{"role": role, "isTemporary": False}]}, token=token)


def login(http: FakeInfisicalHTTP, client_id: str, secret: str):
    return http.request("POST", "/api/v1/auth/universal-auth/login", {"clientId": client_id, "clientSecret": secret})


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["infisical", *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)


def error_of(body: dict) -> tuple[int, str, str]:
    assert set(body) >= {"reqId", "statusCode", "message", "error"}, body
    assert re.fullmatch(r"req-[A-Za-z0-9]{14}", body["reqId"])
    return body["statusCode"], body["message"], body["error"]


# ------------------------------------------------------------------ a fresh instance and its bootstrap

def test_a_fresh_instance_is_up_and_says_it_is_not_initialized(infisical_http):
    status, body = infisical_http.request("GET", "/api/status")
    assert status == 200 and body["message"] == "Ok"
    status, body = infisical_http.request("GET", "/api/v1/admin/config")
    assert status == 200 and body["config"]["initialized"] is False


def test_bootstrap_returns_the_admin_its_organization_and_a_token_and_marks_the_instance_initialized(infisical_http):
    status, body = infisical_http.request("POST", "/api/v1/admin/bootstrap", ADMIN)
    assert status == 200
    assert body["message"] == "Successfully bootstrapped instance"
    assert body["user"]["email"] == "admin@example.com"  # lower-cased
    assert body["user"]["superAdmin"] is True
    assert body["organization"]["name"] == "Local AI" and body["organization"]["id"]
    assert body["organization"]["slug"].startswith("local-ai-")
    assert body["identity"]["name"] == "Instance Admin Identity"
    assert body["identity"]["credentials"]["token"]
    config = infisical_http.request("GET", "/api/v1/admin/config")[1]["config"]
    assert config["initialized"] is True
    assert config["adminIdentityIds"] == [body["identity"]["id"]]


def test_a_second_bootstrap_is_refused_as_already_set_up(infisical_http):
    bootstrap(infisical_http)
    status, body = infisical_http.request("POST", "/api/v1/admin/bootstrap",
                                          {**ADMIN, "email": "other@example.com"})
    assert status == 400
    assert error_of(body) == (400, "Instance has already been set up", "BadRequest")


def test_bootstrap_with_an_invalid_email_and_an_empty_password_lists_both_in_a_422(infisical_http):
    status, body = infisical_http.request("POST", "/api/v1/admin/bootstrap",
                                          {"email": "not-an-email", "password": "", "organization": "o"})
    assert status == 422
    code, issues, name = error_of(body)
    assert name == "ValidationFailure"
    assert [(i["path"], i["code"]) for i in issues] == [(["email"], "invalid_string"), (["password"], "too_small")]
    assert infisical_http.request("GET", "/api/v1/admin/config")[1]["config"]["initialized"] is False


def test_bootstrap_without_a_body_is_a_422(infisical_http):
    status, body = infisical_http.request("POST", "/api/v1/admin/bootstrap")
    assert status == 422 and body["message"][0]["message"] == "Required"


def test_bootstrap_for_an_email_that_already_has_a_user_is_refused(infisical_server, infisical_http):
    infisical_server.update(http_users={"u1": {"id": "u1", "email": "admin@example.com", "username": "admin"}})
    status, body = infisical_http.request("POST", "/api/v1/admin/bootstrap", ADMIN)
    assert error_of(body) == (400, "User already exists", "Instance initialization")


# ------------------------------------------------------------------ auth

AUTHENTICATED = [(method, route) for method, route, _ in ROUTES
                 if route not in ("/api/status", "/api/v1/admin/config", "/api/v1/admin/bootstrap",
                                  "/api/v1/auth/universal-auth/login")]


@pytest.mark.parametrize("method,route", AUTHENTICATED)
def test_every_management_route_without_a_token_answers_401_token_missing(infisical_http, method, route):
    path = re.sub(r":[A-Za-z]+", "abcdefgh", route)
    status, body = infisical_http.request(method, path, {} if method == "POST" else None)
    assert status == 401
    assert error_of(body) == (401, "Token missing", "UnauthorizedError")


def test_an_unknown_token_is_a_403_token_error(infisical_http):
    bootstrap(infisical_http)
    status, body = infisical_http.request("GET", "/api/v1/workspace", token="not-a-token")
    assert status == 403 and body["error"] == "TokenError"


def test_an_unknown_route_answers_like_fastify(infisical_http):
    status, body = infisical_http.request("GET", "/api/v3/nowhere")
    assert status == 404 and body["message"] == "Route GET:/api/v3/nowhere not found"


# ------------------------------------------------------------------ projects

def test_a_project_created_by_the_admin_identity_has_dev_staging_prod_and_the_admin_as_admin(
        infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    assert project["orgId"] == org_id and project["slug"] == "localai-stack"
    assert project["_id"] == project["id"] and project["type"] == "secret-manager"
    assert [(e["name"], e["slug"]) for e in project["environments"]] == [
        ("Development", "dev"), ("Staging", "staging"), ("Production", "prod")]
    members = infisical_http.request("GET", f"/api/v2/workspace/{project['id']}/identity-memberships",
                                     token=token)[1]["identityMemberships"]
    assert [(m["identity"]["name"], [r["role"] for r in m["roles"]]) for m in members] == [
        ("Instance Admin Identity", ["admin"])]
    # ...and the stand-in CLI sees the project with its environments.
    assert infisical_server.state()["projects"][project["id"]] == {"dev": {"/": {}}, "staging": {"/": {}},
                                                                   "prod": {"/": {}}}


def test_a_project_without_a_slug_gets_one_from_its_name(infisical_http):
    token, _ = bootstrap(infisical_http)
    status, body = infisical_http.request("POST", "/api/v2/workspace", {"projectName": "Local AI"}, token=token)
    assert status == 200 and re.fullmatch(r"local-ai-[a-z0-9]{4}", body["project"]["slug"])


def test_a_slug_already_taken_in_the_organization_fails_the_create(infisical_http):
    token, _ = bootstrap(infisical_http)
    create_project(infisical_http, token)
    status, body = infisical_http.request("POST", "/api/v2/workspace",
                                          {"projectName": "again", "slug": "localai-stack"}, token=token)
    assert status == 500 and body["message"] == "Something went wrong"
    assert len(infisical_http.state()["http_projects"]) == 1


@pytest.mark.parametrize("slug", ["abc", "Local-AI", "-localai", "localai-" + "x" * 40])
def test_a_slug_that_is_too_short_too_long_or_not_lower_case_is_a_422(infisical_http, slug):
    token, _ = bootstrap(infisical_http)
    status, body = infisical_http.request("POST", "/api/v2/workspace", {"projectName": "p", "slug": slug},
                                          token=token)
    assert status == 422 and body["message"][0]["path"] == ["slug"]


def test_a_project_is_found_again_by_its_slug_or_its_id(infisical_http):
    token, _ = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    status, body = infisical_http.request("GET", "/api/v2/workspace/localai-stack", token=token)
    assert status == 200 and body["id"] == project["id"]
    status, body = infisical_http.request("GET", f"/api/v1/workspace/{project['id']}", token=token)
    assert status == 200 and body["workspace"]["slug"] == "localai-stack"
    status, body = infisical_http.request("GET", "/api/v2/workspace/no-such-project", token=token)
    assert status == 404 and body["error"] == "NotFound"


def test_listing_projects_with_an_identity_token_finds_none_as_the_2025_source_reads(infisical_server, infisical_http):
    token, _ = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    assert infisical_http.request("GET", "/api/v1/workspace", token=token) == (200, {"workspaces": []})
    # Later versions list an identity's own projects: the option switches to that.
    infisical_server.set_http_option("identity_project_list", "member")
    status, body = infisical_http.request("GET", "/api/v1/workspace", token=token)
    assert [w["id"] for w in body["workspaces"]] == [project["id"]]


# ------------------------------------------------------------------ identities and universal auth

def test_an_identity_is_created_with_no_org_access_by_default_and_listed_in_its_organization(infisical_http):
    token, org_id = bootstrap(infisical_http)
    status, body = infisical_http.request("POST", "/api/v1/identities",
                                          {"name": "start-services", "organizationId": org_id}, token=token)
    assert status == 200 and body["identity"]["authMethods"] == []
    status, body = infisical_http.request("GET", f"/api/v1/identities?orgId={org_id}", token=token)
    assert body["totalCount"] == 2
    assert {(i["identity"]["name"], i["role"]) for i in body["identities"]} == {
        ("Instance Admin Identity", "admin"), ("start-services", "no-access")}


def test_listing_identities_needs_the_org_id(infisical_http):
    token, _ = bootstrap(infisical_http)
    status, body = infisical_http.request("GET", "/api/v1/identities", token=token)
    assert status == 422 and body["message"][0]["path"] == ["orgId"]


def test_an_identity_for_another_organization_is_forbidden(infisical_http):
    token, _ = bootstrap(infisical_http)
    status, body = infisical_http.request("POST", "/api/v1/identities",
                                          {"name": "x", "organizationId": "another-org"}, token=token)
    assert status == 403


def test_universal_auth_is_404_before_it_is_attached_and_400_when_attached_twice(infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id = infisical_http.request("POST", "/api/v1/identities",
                                         {"name": "i", "organizationId": org_id}, token=token)[1]["identity"]["id"]
    url = f"/api/v1/auth/universal-auth/identities/{identity_id}"
    status, body = infisical_http.request("GET", url, token=token)
    assert error_of(body) == (404, f"Failed to find universal auth for identity with ID {identity_id}", "NotFound")
    assert infisical_http.request("POST", url, {}, token=token)[0] == 200
    status, body = infisical_http.request("POST", url, {}, token=token)
    assert error_of(body) == (400, "Failed to add universal auth to already configured identity", "BadRequest")
    status, body = infisical_http.request("GET", url, token=token)
    assert status == 200 and body["identityUniversalAuth"]["clientId"]


def test_universal_auth_for_an_unknown_identity_is_404(infisical_http):
    token, _ = bootstrap(infisical_http)
    status, body = infisical_http.request("POST", "/api/v1/auth/universal-auth/identities/nobody", {}, token=token)
    assert error_of(body) == (404, "Failed to find identity with ID nobody", "NotFound")


def test_attaching_with_an_empty_body_gives_30_day_tokens_and_open_ip_ranges(infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id = infisical_http.request("POST", "/api/v1/identities",
                                         {"name": "i", "organizationId": org_id}, token=token)[1]["identity"]["id"]
    status, body = infisical_http.request("POST", f"/api/v1/auth/universal-auth/identities/{identity_id}", {},
                                          token=token)
    ua = body["identityUniversalAuth"]
    assert (ua["accessTokenTTL"], ua["accessTokenMaxTTL"], ua["accessTokenNumUsesLimit"]) == (2592000, 2592000, 0)
    assert [ip["ipAddress"] for ip in ua["clientSecretTrustedIps"]] == ["0.0.0.0", "::"]
    assert re.fullmatch(r"[0-9a-f-]{36}", ua["clientId"])


def test_a_token_ttl_above_its_max_ttl_is_a_422(infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id = infisical_http.request("POST", "/api/v1/identities",
                                         {"name": "i", "organizationId": org_id}, token=token)[1]["identity"]["id"]
    status, body = infisical_http.request("POST", f"/api/v1/auth/universal-auth/identities/{identity_id}",
                                          {"accessTokenTTL": 7200, "accessTokenMaxTTL": 3600}, token=token)
    assert status == 422
    assert body["message"][0]["message"] == "Access Token TTL cannot be greater than Access Token Max TTL."


def test_a_restricted_ip_range_is_refused_on_the_free_plan(infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id = infisical_http.request("POST", "/api/v1/identities",
                                         {"name": "i", "organizationId": org_id}, token=token)[1]["identity"]["id"]
    status, body = infisical_http.request("POST", f"/api/v1/auth/universal-auth/identities/{identity_id}",
                                          {"clientSecretTrustedIps": [{"ipAddress": "127.0.0.1/32"}]}, token=token)
    assert status == 400 and "plan restriction" in body["message"]


def test_a_client_secret_for_an_identity_without_universal_auth_is_400(infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id = infisical_http.request("POST", "/api/v1/identities",
                                         {"name": "i", "organizationId": org_id}, token=token)[1]["identity"]["id"]
    status, body = infisical_http.request(
        "POST", f"/api/v1/auth/universal-auth/identities/{identity_id}/client-secrets", {}, token=token)
    assert error_of(body) == (400, "The identity does not have universal auth", "BadRequest")


def test_a_client_secret_is_shown_once_and_listed_only_by_its_prefix(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id, client_id, secret = machine_identity(infisical_http, token, org_id)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    status, body = infisical_http.request(
        "GET", f"/api/v1/auth/universal-auth/identities/{identity_id}/client-secrets", token=token)
    assert status == 200 and len(body["clientSecretData"]) == 1
    data = body["clientSecretData"][0]
    assert data["clientSecretPrefix"] == secret[:4] and data["clientSecretTTL"] == 0
    assert data["clientSecretNumUsesLimit"] == 0 and data["isClientSecretRevoked"] is False
    assert secret not in json.dumps(body)
    assert secret not in json.dumps(infisical_server.http_state())  # only a hash is kept...
    # ...while the stand-in CLI's own table holds it, as its login needs.
    assert infisical_server.state()["machine_identities"][client_id]["client_secret"] == secret


def test_login_answers_a_bearer_token_with_the_identitys_ttl(infisical_http):
    token, org_id = bootstrap(infisical_http)
    _, client_id, secret = machine_identity(infisical_http, token, org_id)
    status, body = login(infisical_http, client_id, secret)
    assert status == 200
    assert body["tokenType"] == "Bearer" and body["expiresIn"] == 2592000 and body["accessTokenMaxTTL"] == 2592000
    assert body["accessToken"]


def test_login_with_a_wrong_secret_is_401_and_with_an_unknown_client_id_is_404(infisical_http):
    token, org_id = bootstrap(infisical_http)
    _, client_id, secret = machine_identity(infisical_http, token, org_id)
    assert error_of(login(infisical_http, client_id, secret[:4] + "0" * 60)[1]) == (
        401, "Invalid credentials", "UnauthorizedError")
    assert error_of(login(infisical_http, "00000000-0000-4000-8000-000000000000", secret)[1]) == (
        404, "No identity with specified client ID was found", "NotFound")


def test_a_client_secret_with_a_use_limit_stops_working_once_used_up(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    _, client_id, secret = machine_identity(infisical_http, token, org_id, numUsesLimit=1)
    assert login(infisical_http, client_id, secret)[0] == 200
    status, body = login(infisical_http, client_id, secret)
    assert error_of(body) == (401, "Access denied due to client secret usage limit reached", "UnauthorizedError")
    assert client_id not in infisical_server.state()["machine_identities"]  # revoked for the stand-in too


# ------------------------------------------------------------------ project memberships

def test_a_membership_with_the_member_role_is_what_the_identity_reads_and_writes_secrets_with(infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, _, _ = machine_identity(infisical_http, token, org_id)
    status, body = add_member(infisical_http, token, project["id"], identity_id)
    assert status == 200
    assert body["identityMembership"]["projectId"] == project["id"]
    assert body["identityMembership"]["identityId"] == identity_id
    members = infisical_http.request("GET", f"/api/v2/workspace/{project['id']}/identity-memberships",
                                     token=token)[1]["identityMemberships"]
    roles = {m["identity"]["id"]: [r["role"] for r in m["roles"]] for m in members}
    assert roles[identity_id] == ["member"]


def test_a_membership_without_roles_falls_back_to_the_deprecated_role_no_access(infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, _, _ = machine_identity(infisical_http, token, org_id)
    status, _ = infisical_http.request("POST", f"/api/v2/workspace/{project['id']}/identity-memberships/{identity_id}",
                                       {}, token=token)
    assert status == 200
    members = infisical_http.state()["http_memberships"][project["id"]]
    assert [r["role"] for r in members[identity_id]["roles"]] == ["no-access"]


def test_adding_an_identity_twice_an_unknown_identity_or_an_unknown_role_is_refused(infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, _, _ = machine_identity(infisical_http, token, org_id)
    assert add_member(infisical_http, token, project["id"], identity_id)[0] == 200
    status, body = add_member(infisical_http, token, project["id"], identity_id)
    assert error_of(body) == (
        400, f"Identity with id {identity_id} already exists in project with id {project['id']}", "BadRequest")
    status, body = add_member(infisical_http, token, project["id"], "nobody")
    assert error_of(body) == (400, "Failed to find identity with id nobody", "BadRequest")
    other, _, _ = machine_identity(infisical_http, token, org_id, name="other")
    assert add_member(infisical_http, token, project["id"], other, role="developer")[0] == 404


def test_a_temporary_role_without_its_range_is_a_422(infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, _, _ = machine_identity(infisical_http, token, org_id)
    status, _ = infisical_http.request(
        "POST", f"/api/v2/workspace/{project['id']}/identity-memberships/{identity_id}",
        {"roles": [{"role": "member", "isTemporary": True}]}, token=token)
    assert status == 422


def test_an_identity_that_is_only_a_member_cannot_add_others_to_the_project(infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, client_id, secret = machine_identity(infisical_http, token, org_id)
    add_member(infisical_http, token, project["id"], identity_id)
    other, _, _ = machine_identity(infisical_http, token, org_id, name="other")
    member_token = login(infisical_http, client_id, secret)[1]["accessToken"]
    status, body = add_member(infisical_http, member_token, project["id"], other)
    assert status == 403 and body["error"] == "PermissionDenied"


def test_memberships_of_an_unknown_project_are_404(infisical_http):
    token, _ = bootstrap(infisical_http)
    status, body = infisical_http.request("GET", "/api/v2/workspace/nope/identity-memberships", token=token)
    assert status == 404


# ------------------------------------------------------------------ with the stand-in CLI

def test_an_identity_created_over_http_logs_in_and_exports_through_the_stand_in_cli(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, client_id, secret = machine_identity(infisical_http, token, org_id)
    assert add_member(infisical_http, token, project["id"], identity_id)[0] == 200
    infisical_server.set_secrets({"N8N_ENCRYPTION_KEY": "k3y", "POSTGRES_PASSWORD": "pw"}, project=project["id"])

    logged_in = cli(infisical_http.cli_env(infisical_server.env, INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=client_id,
                                           INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=secret),
                    "login", "--method=universal-auth", "--plain", "--silent")
    assert logged_in.returncode == 0, logged_in.stderr
    access_token = logged_in.stdout.strip()
    assert access_token == login(infisical_http, client_id, secret)[1]["accessToken"]

    exported = cli(infisical_http.cli_env(infisical_server.env, INFISICAL_TOKEN=access_token),
                   "export", "--format=json", f"--projectId={project['id']}", "--env=dev")
    assert exported.returncode == 0, exported.stderr
    assert {s["key"]: s["value"] for s in json.loads(exported.stdout)} == {
        "N8N_ENCRYPTION_KEY": "k3y", "POSTGRES_PASSWORD": "pw"}


def test_the_stand_in_cli_rejects_a_client_secret_the_server_never_issued(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    _, client_id, _ = machine_identity(infisical_http, token, org_id)
    result = cli(infisical_http.cli_env(infisical_server.env, INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=client_id,
                                        INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET="0" * 64),
                 "login", "--method=universal-auth", "--plain", "--silent")
    assert result.returncode == 1 and "Invalid credentials" in result.stderr


def test_an_empty_project_exports_an_empty_list_in_each_default_environment(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    project = create_project(infisical_http, token)
    identity_id, client_id, secret = machine_identity(infisical_http, token, org_id)
    add_member(infisical_http, token, project["id"], identity_id)
    access_token = login(infisical_http, client_id, secret)[1]["accessToken"]
    env = infisical_http.cli_env(infisical_server.env, INFISICAL_TOKEN=access_token)
    for environment in ("dev", "staging", "prod"):
        result = cli(env, "export", "--format=json", f"--projectId={project['id']}", f"--env={environment}")
        assert (result.returncode, result.stdout) == (0, "[]"), result.stderr


def test_the_stand_in_probing_the_domain_reaches_the_server_and_fails_once_it_is_stopped(infisical_server):
    infisical_server.update(probe_domain=True)
    infisical_server.set_secrets({"A": "1"})
    server = infisical_server.http()
    server.start()
    try:
        env = server.cli_env(infisical_server.env, INFISICAL_TOKEN="tok-1")
        result = cli(env, "export", "--format=json", "--projectId=proj-1")
        assert result.returncode == 0, result.stderr
        assert [s["key"] for s in json.loads(result.stdout)] == ["A"]
    finally:
        server.stop()
    result = cli(env, "export", "--format=json", "--projectId=proj-1")
    assert result.returncode == 1 and "connection refused" in result.stderr


# ------------------------------------------------------------------ failure injection and server modes

def test_an_injected_failure_answers_once_changes_nothing_and_then_the_route_works(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    infisical_server.fail_http("POST /api/v1/identities", 500)
    status, body = infisical_http.request("POST", "/api/v1/identities", {"name": "i", "organizationId": org_id},
                                          token=token)
    assert error_of(body) == (500, "Something went wrong", "InternalServerError")
    assert len(infisical_server.http_state()["http_identities"]) == 1  # the admin identity only
    assert infisical_http.request("POST", "/api/v1/identities", {"name": "i", "organizationId": org_id},
                                  token=token)[0] == 200
    assert "POST /api/v1/identities" not in infisical_server.state()["http_fail"]


def test_a_failure_on_a_route_with_parameters_can_be_named_by_its_template_and_repeat(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    identity_id = infisical_http.request("POST", "/api/v1/identities",
                                         {"name": "i", "organizationId": org_id}, token=token)[1]["identity"]["id"]
    infisical_server.fail_http("POST /api/v1/auth/universal-auth/identities/:identityId", 503, times="always",
                               message="maintenance")
    url = f"/api/v1/auth/universal-auth/identities/{identity_id}"
    for _ in range(3):
        status, body = infisical_http.request("POST", url, {}, token=token)
        assert (status, body["message"]) == (503, "maintenance")


def test_a_delayed_answer_and_a_dropped_connection_can_be_injected(infisical_server, infisical_http):
    infisical_server.fail_http("GET /api/status", None, delay=0.5)
    started = time.monotonic()
    assert infisical_http.request("GET", "/api/status")[0] == 200
    assert time.monotonic() - started >= 0.5
    infisical_server.fail_http("GET /api/status", None, drop=True)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        infisical_http.request("GET", "/api/status", timeout=5)
    assert infisical_http.request("GET", "/api/status")[0] == 200


@pytest.mark.parametrize("mode,expected", [("garbage", 502), ("empty", 200)])
def test_the_stand_ins_server_modes_apply_to_the_api_too(infisical_server, infisical_http, mode, expected):
    infisical_server.set_server(mode)
    status, body = infisical_http.request("GET", "/api/status")
    assert status == expected and not isinstance(body, dict)


def test_a_server_that_is_down_closes_the_connection(infisical_server, infisical_http):
    infisical_server.set_server("down")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        infisical_http.request("GET", "/api/status", timeout=5)


def test_a_hanging_server_answers_nothing_until_it_is_stopped(infisical_server):
    server = infisical_server.http()
    server.start()
    infisical_server.set_server("hang")
    try:
        with pytest.raises((TimeoutError, urllib.error.URLError, OSError)):
            server.request("GET", "/api/status", timeout=0.5)
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------ the log and concurrency

def test_every_request_is_logged_with_its_route_and_actor_but_never_its_body(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    _, client_id, secret = machine_identity(infisical_http, token, org_id)
    calls = infisical_server.http_calls()
    assert [(c["method"], c["route"], c["status"]) for c in calls] == [
        ("POST", "/api/v1/admin/bootstrap", 200),
        ("POST", "/api/v1/identities", 200),
        ("POST", "/api/v1/auth/universal-auth/identities/:identityId", 200),
        ("POST", "/api/v1/auth/universal-auth/identities/:identityId/client-secrets", 200)]
    admin_id = infisical_server.http_state()["http_admin"]["adminIdentityIds"][0]
    assert [c["actor"] for c in calls] == [None, admin_id, admin_id, admin_id]
    assert ADMIN["password"] not in json.dumps(calls) and secret not in json.dumps(calls)


def test_concurrent_requests_all_land_in_the_shared_state(infisical_server, infisical_http):
    token, org_id = bootstrap(infisical_http)
    results: list[int] = []

    def create(n: int) -> None:
        results.append(infisical_http.request("POST", "/api/v1/identities",
                                              {"name": f"i{n}", "organizationId": org_id}, token=token)[0])

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 12
    names = {i["name"] for i in infisical_server.http_state()["http_identities"].values()}
    assert names == {"Instance Admin Identity", *(f"i{n}" for n in range(12))}


def test_a_request_with_a_body_that_is_not_json_is_refused(infisical_http):
    status, body = infisical_http.request("POST", "/api/v1/admin/bootstrap", raw=b"{not json")
    assert status == 400


def test_the_server_reports_its_url_only_while_running(infisical_server):
    server = infisical_server.http()
    with pytest.raises(RuntimeError):
        server.base_url
    with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
        assert server.api_url == server.base_url + "/api"
        with urllib.request.urlopen(server.api_url + "/status", timeout=5) as response:
            assert response.status == 200
