"""Authentication that cannot be forged, on API replicas of the test stack started with auth configured.

Two replicas, both listening on 127.0.0.1 (so the socket peer of every test request is 127.0.0.1):
`proxied` trusts 127.0.0.1 as the authenticating proxy, `direct` trusts only 10.0.0.0/8, so to it
the test is a client that reached the API without the proxy. Both take bearer tokens, and
`proxied` also OIDC tokens from an issuer this module runs (JWKS + discovery, keys it generates).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.kube import JobStore
from ingest.local.launcher import Stack
from tests.integration.bundles import bundle
from tests.integration.helpers import wait_complete
from tests.integration.replica import api_replica, start_failure

pytestmark = pytest.mark.stack
TOKEN = "s3cr3t-t0ken-for-alice"
HEADER = "X-Http-Authed-User"
AUDIENCE = "pacifica-ingest"
KEY_ID = "test-key-1"


class Issuer:
    """A tiny OIDC issuer: discovery document and JWKS over HTTP, tokens signed with a key it made."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key()))
                    body = {"keys": [public | {"kid": KEY_ID, "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, key: Any = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "u-123", "preferred_username": "carol",
                   "iat": now, "exp": now + 300} | claims
        return jwt.encode(payload, key if key is not None else self.key, algorithm=algorithm, headers={"kid": KEY_ID})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# token user\n{TOKEN} alice\n")
    return path


@pytest.fixture(scope="module")
def proxied(stack: Stack, tokens_file: Path, issuer: Issuer) -> Iterator[str]:
    env = {"INGEST_AUTH_TOKENS_FILE": str(tokens_file), "INGEST_AUTH_HEADER": HEADER,
           "INGEST_AUTH_TRUSTED_PROXIES": "127.0.0.1/32", "INGEST_AUTH_OIDC_ISSUER": issuer.url,
           "INGEST_AUTH_OIDC_AUDIENCE": AUDIENCE, "INGEST_AUTH_OIDC_USER_CLAIM": "preferred_username"}
    with api_replica(stack, tokens_file.parent, env) as url:
        yield url
    for log in tokens_file.parent.glob("api-*.log"):
        assert TOKEN not in log.read_text(), "a token must never reach the log"


@pytest.fixture(scope="module")
def direct(stack: Stack, tokens_file: Path) -> Iterator[str]:
    env = {"INGEST_AUTH_TOKENS_FILE": str(tokens_file), "INGEST_AUTH_HEADER": HEADER,
           "INGEST_AUTH_TRUSTED_PROXIES": "10.0.0.0/8"}
    with api_replica(stack, tokens_file.parent, env) as url:
        yield url


def upload_as(url: str, headers: dict[str, str], name: str) -> httpx.Response:
    body, _ = bundle({name: name.encode()})
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        return client.post("/upload", content=body)


def user_of(job_store: JobStore, response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.text
    return job_store.get(f"ingest-{response.json()['job_id']}")["spec"].get("user")


def test_without_credentials_everything_but_probes_is_401(direct: str) -> None:
    body, _ = bundle({"a.txt": b"a"})
    with httpx.Client(base_url=direct) as client:
        for method, path in [("POST", "/upload"), ("POST", "/ingest"), ("POST", "/move"),
                             ("GET", "/get_state?job_id=1"), ("GET", "/get_state/1")]:
            response = client.request(method, path, content=body if method == "POST" else None)
            assert response.status_code == 401, (method, path, response.text)
            assert "Traceback" not in response.text and "authentication required" in response.json()["message"]
        wrong = client.post("/upload", content=body, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        for path in ("/", "/healthz", "/readyz"):
            assert client.get(path).status_code == 200


def test_a_valid_token_names_the_user_in_the_job(direct: str, job_store: JobStore) -> None:
    response = upload_as(direct, {"Authorization": f"Bearer {TOKEN}"}, "token.txt")
    assert user_of(job_store, response) == "alice"
    with httpx.Client(base_url=direct, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        assert wait_complete(client, response.json()["job_id"])["state"] == "OK"


@pytest.mark.parametrize("forged", [
    {HEADER: "bob"},
    {HEADER: "bob", "X-Forwarded-For": "10.1.2.3"},
    {HEADER: "bob", "X-Real-IP": "10.1.2.3", "Forwarded": "for=10.1.2.3"},
    {HEADER: "bob", "X-Forwarded-For": "10.1.2.3, 10.9.9.9", "Authorization": "Bearer wrong"},
], ids=["header", "x-forwarded-for", "forwarded", "with-a-wrong-token"])
def test_a_header_from_outside_the_trusted_proxies_is_401(direct: str, forged: dict[str, str]) -> None:
    response = upload_as(direct, forged, "forged.txt")
    assert response.status_code == 401, response.text


def test_a_header_from_outside_does_not_change_who_a_token_names(direct: str, job_store: JobStore) -> None:
    response = upload_as(direct, {HEADER: "bob", "X-Forwarded-For": "10.1.2.3", "Authorization": f"Bearer {TOKEN}"},
                         "both.txt")
    assert user_of(job_store, response) == "alice"


def test_the_trusted_proxy_names_the_user(proxied: str, job_store: JobStore) -> None:
    response = upload_as(proxied, {HEADER: "bob"}, "proxy.txt")
    assert user_of(job_store, response) == "bob"
    with httpx.Client(base_url=proxied, headers={HEADER: "bob"}, timeout=60) as client:
        assert client.get(f"/get_state/{response.json()['job_id']}").status_code == 200


@pytest.mark.parametrize("name", ["../bob", "bob/x", "", "a b"])
def test_a_user_name_that_could_be_a_path_is_401(proxied: str, name: str) -> None:
    assert upload_as(proxied, {HEADER: name}, "path.txt").status_code == 401


def test_an_oidc_token_names_the_user_from_the_claim(proxied: str, issuer: Issuer, job_store: JobStore) -> None:
    response = upload_as(proxied, {"Authorization": f"Bearer {issuer.token()}"}, "oidc.txt")
    assert user_of(job_store, response) == "carol"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(issuer: Issuer, algorithm: str, secret: bytes | None) -> str:
    """A token PyJWT refuses to make: unsigned, or HMAC-signed with the issuer's public key as the secret."""
    claims = {"iss": issuer.url, "aud": AUDIENCE, "preferred_username": "carol", "exp": int(time.time()) + 300}
    signing_input = (
        f"{_b64(json.dumps({'alg': algorithm, 'kid': KEY_ID}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize("case",
                         ["expired", "wrong audience", "wrong key", "wrong issuer", "alg none",
                          "hmac with the public key",
                                  "no user claim"])
def test_a_bad_oidc_token_is_401(proxied: str, issuer: Issuer, case: str) -> None:
    now = int(time.time())
    if case == "expired":
        token = issuer.token(exp=now - 120, iat=now - 600)
    elif case == "wrong audience":
        token = issuer.token(aud="another-service")
    elif case == "wrong key":
        token = issuer.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif case == "wrong issuer":
        token = issuer.token(iss="http://127.0.0.1:1")
    elif case == "alg none":
        token = _handmade(issuer, "none", None)
    elif case == "hmac with the public key":
        public = issuer.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        token = _handmade(issuer, "HS256", public)
    else:
        token = issuer.token(preferred_username=None)
    response = upload_as(proxied, {"Authorization": f"Bearer {token}"}, "bad-oidc.txt")
    assert response.status_code == 401, (case, response.text)


@pytest.mark.parametrize("env, words", [
    ({"INGEST_AUTH_HEADER": HEADER}, "INGEST_AUTH_TRUSTED_PROXIES is empty"),
    ({"INGEST_AUTH_OIDC_ISSUER": "http://127.0.0.1:1"}, "INGEST_AUTH_OIDC_AUDIENCE is empty"),
    ({"INGEST_AUTH_HEADER": HEADER, "INGEST_AUTH_TRUSTED_PROXIES": "not-a-network"}, "INGEST_AUTH_TRUSTED_PROXIES"),
])
def test_unsafe_auth_settings_refuse_to_start(stack: Stack, env: dict[str, str], words: str) -> None:
    assert words in start_failure(stack, env)


def test_a_token_line_without_a_user_refuses_to_start(stack: Stack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} alice\nanother-secret-token\n")
    output = start_failure(stack, {"INGEST_AUTH_TOKENS_FILE": str(tokens)})
    assert "line 2" in output and "never a user name" in output
    assert "another-secret-token" not in output
