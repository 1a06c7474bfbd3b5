"""Password authentication for ``fedquery serve``: SCRAM-SHA-256, as PostgreSQL does it.

The password comes from ``FEDQUERY_SERVE_PASSWORD``: a plain password (turned into a SCRAM
verifier at start, then forgotten) or a verifier made beforehand, in PostgreSQL's own
``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` form
(``Verifier.from_password(p).text()`` makes one; so does PostgreSQL, in ``pg_authid``).
The server keeps only the verifier: it cannot give the password back, and the client never
sends the password, only a proof the server checks in constant time (RFC 5802 / 7677).
Why SCRAM: buenavista's own md5 check keeps the plain password and compares it with ``==``;
libpq, pgjdbc (DBeaver, Tableau) and psycopg all speak SCRAM.

>>> verifier = Verifier.from_setting("s3cret")     # doctest: +SKIP
>>> exchange = ScramExchange(verifier)             # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

from fedquery.cli_params import CommandError

ENV = "FEDQUERY_SERVE_PASSWORD"
MECHANISM = "SCRAM-SHA-256"
ITERATIONS = 4096  # PostgreSQL's scram_iterations default


class AuthFailed(Exception):
    """The client's proof is wrong (or its messages malformed): SQLSTATE 28P01."""


@dataclass(frozen=True, repr=False)
class Verifier:
    """What the server keeps of a password: salt, iterations, StoredKey, ServerKey."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:
        return "Verifier(SCRAM-SHA-256, ...)"  # never shows the keys

    @classmethod
    def from_password(cls, password: str, *, salt: bytes | None = None,
                      iterations: int = ITERATIONS) -> Verifier:
        """The verifier of ``password`` (SASLprep'd, as libpq does, before hashing)."""
        salt = salt if salt is not None else os.urandom(16)
        salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        return cls(salt, iterations, hashlib.sha256(client_key).digest(),
                   _hmac(salted, b"Server Key"))

    @classmethod
    def from_setting(cls, text: str) -> Verifier:
        """A ``SCRAM-SHA-256$...`` verifier as it is, or a plain password hashed now."""
        if text.startswith(f"{MECHANISM}$"):
            return cls.parse(text)
        if not text:
            raise CommandError(f"{ENV} is set but empty; set a password, or unset it")
        return cls.from_password(text)

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """``SCRAM-SHA-256$4096:<salt b64>$<StoredKey b64>:<ServerKey b64>``."""
        try:
            _, head, keys = text.split("$")
            iterations, salt = head.split(":")
            stored, server = keys.split(":")
            verifier = cls(base64.b64decode(salt, validate=True), int(iterations),
                           base64.b64decode(stored, validate=True),
                           base64.b64decode(server, validate=True))
        except ValueError:
            verifier = None
        if verifier is None or verifier.iterations < 1 or len(verifier.stored_key) != 32 \
                or len(verifier.server_key) != 32:
            raise CommandError(f"{ENV}: not a SCRAM-SHA-256 verifier (expected "
                               "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>; "
                               "docs/serve.md shows how to make one)")
        return verifier

    def text(self) -> str:
        """The verifier in PostgreSQL's form (safe to store: it is not the password)."""
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        return (f"{MECHANISM}${self.iterations}:{b64(self.salt)}$"
                f"{b64(self.stored_key)}:{b64(self.server_key)}")


def password_from_environment(environ: dict[str, str] | None = None) -> Verifier | None:
    """The verifier of ``FEDQUERY_SERVE_PASSWORD``, or None when it is not set."""
    text = (environ if environ is not None else os.environ).get(ENV)
    return None if text is None else Verifier.from_setting(text)


class ScramExchange:
    """One client's SCRAM-SHA-256 exchange: ``first(message)`` answers the client-first
    message with the server-first one; ``final(message)`` checks the client's proof and
    answers with the server's signature, or raises ``AuthFailed``."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._client_first_bare = self._server_first = self._gs2 = self._nonce = ""

    def first(self, message: str) -> str:
        """``n,,n=,r=<client nonce>`` -> ``r=<nonce>,s=<salt>,i=<iterations>``."""
        gs2_flag, _, rest = message.partition(",")
        authzid, _, bare = rest.partition(",")
        if gs2_flag not in ("n", "y") or authzid or not bare:
            # "p=...": channel binding, which this server does not offer (no SCRAM-SHA-256-PLUS)
            raise AuthFailed("malformed or unsupported SCRAM client-first message")
        attrs = _attributes(bare)
        if "r" not in attrs or "m" in attrs:
            raise AuthFailed("malformed SCRAM client-first message")
        self._gs2 = f"{gs2_flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = attrs["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        salt = base64.b64encode(self.verifier.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self.verifier.iterations}"
        return self._server_first

    def final(self, message: str) -> str:
        """``c=<gs2 b64>,r=<nonce>,p=<proof b64>`` -> ``v=<server signature b64>``."""
        without_proof, _, proof_part = message.rpartition(",p=")
        attrs = _attributes(without_proof)
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise AuthFailed("malformed SCRAM client-final message") from None
        channel_ok = hmac.compare_digest(attrs.get("c", ""),
                                         base64.b64encode(self._gs2.encode()).decode())
        nonce_ok = hmac.compare_digest(attrs.get("r", ""), self._nonce)
        auth_message = ",".join((self._client_first_bare, self._server_first,
                                 without_proof)).encode()
        signature = _hmac(self.verifier.stored_key, auth_message)
        if len(proof) != len(signature):
            raise AuthFailed("wrong password")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        proof_ok = hmac.compare_digest(hashlib.sha256(client_key).digest(),
                                       self.verifier.stored_key)
        if not (channel_ok and nonce_ok and proof_ok):
            raise AuthFailed("wrong password")
        server_signature = _hmac(self.verifier.server_key, auth_message)
        return "v=" + base64.b64encode(server_signature).decode()


def client_messages(password: str, nonce: str | None = None):
    """The client's side of SCRAM-SHA-256 (for the tests): a
    generator that yields the client-first message, is sent the server-first one, yields
    the client-final message, and is sent the server-final one (which it checks)."""
    nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
    bare = f"n=,r={nonce}"
    server_first = yield f"n,,{bare}"
    attrs = _attributes(server_first)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(),
                                 base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = _hmac(salted, b"Client Key")
    without_proof = f"c={base64.b64encode(b'n,,').decode()},r={attrs['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = yield f"{without_proof},p={base64.b64encode(proof).decode()}"
    expected = _hmac(_hmac(salted, b"Server Key"), auth_message)
    if _attributes(server_final).get("v") != base64.b64encode(expected).decode():
        raise AuthFailed("the server's signature is wrong")


def saslprep(password: str) -> str:
    """RFC 4013 SASLprep, as libpq applies it: spaces mapped, nothing-characters dropped,
    NFKC; a password it cannot prepare is used as it is (libpq's fallback too)."""
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch for ch in password
                     if not stringprep.in_table_b1(ch))
    prepared = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
                  stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
                  stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1)
    if any(test(ch) for ch in prepared for test in prohibited):
        return password
    return prepared


def _attributes(message: str) -> dict[str, str]:
    """``a=1,b=2`` -> {"a": "1", "b": "2"} (values may hold '=')."""
    pairs = (part.split("=", 1) for part in message.split(",") if "=" in part)
    return {key: value for key, value in pairs}


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()
