"""Secrets never reach a report: secret-looking parameters are refused, environment secrets scrubbed."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from recovery.errors import ConfigError

SCRUBBED = "***"
MIN_SECRET_CHARS = 4  # shorter environment values are too common to scrub safely

# a parameter name is secret-looking when one of its words is one of these...
SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "tokens", "credential", "credentials"}
)
# ...or when it contains one of these
NOT_SECRET_VARS = frozenset({"PWD", "OLDPWD"})  # the shell's working directories, not passwords
SECRET_PARTS = ("api_key", "apikey", "private_key", "access_key", "secret_key", "signing_key", "key_material")
SECRET_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("credentials in a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
    ("an AWS access key", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
)


def is_secret_name(name: str) -> bool:
    """True for parameter or variable names that usually hold credentials (password, token, api_key, ...)."""
    lowered = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    return bool(words & SECRET_WORDS) or any(part in lowered for part in SECRET_PARTS)


def secret_kind(value: Any) -> str | None:
    """What kind of secret ``value`` (or a string inside it) looks like, or None."""
    if isinstance(value, str):
        for kind, pattern in SECRET_VALUE_PATTERNS:
            if pattern.search(value):
                return kind
        return None
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else ()
    for item in items:
        found = secret_kind(item)
        if found:
            return found
    return None


def refuse_secrets(values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` when a parameter looks like a secret (by its name or its value)."""
    for name, value in values.items():
        kind: str | None = "its name" if is_secret_name(name) else secret_kind(value)
        if kind:
            raise ConfigError(
                f"parameter {name!r} looks like a secret ({kind}); secrets are never passed to notebooks because "
                "the executed notebook and its report would contain them",
                hint="put credentials in the environment (KAFKA_SASL_PASSWORD, KAFKA_SSL_PASSWORD, ...)",
            )


def environment_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables (what a report must never contain), longest first."""
    env = os.environ if env is None else env
    values = {
        v for k, v in env.items() if is_secret_name(k) and k not in NOT_SECRET_VARS and len(v) >= MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> tuple[str, int]:
    """``text`` with every occurrence of each secret replaced by ``***``, and the number of replacements."""
    count = 0
    for secret in secrets:
        if secret and secret in text:
            count += text.count(secret)
            text = text.replace(secret, SCRUBBED)
        escaped = json.dumps(secret)[1:-1]  # the same value inside a JSON string (a saved notebook)
        if escaped != secret and escaped in text:
            count += text.count(escaped)
            text = text.replace(escaped, SCRUBBED)
    return text, count
