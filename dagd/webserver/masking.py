"""Secrets out of pages: a second mask over whatever configuration the supervisor sends.

The supervisor already masks known secret keys (``InstanceConfig.dump_public``), but custom
coordinator and launcher sections are free-form: a key such as ``aws_secret_access_key`` or a
connection URL with a password inside ``config:`` would pass through it. The UI therefore masks
again, by key name *and* by value shape, before anything is rendered.
"""

from __future__ import annotations

from typing import Any

from dagd.instance.config import masked_url

MASK = "***"

# Substrings of key names whose values are secret ("db_password", "slack_webhook_token", ...).
_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential", "private_key")
# Keys that name a file holding a secret: the path itself is not secret and helps debugging.
_PATH_SUFFIXES = ("_file", "_path")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered.endswith(_PATH_SUFFIXES):
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def mask_value(value: str) -> str:
    """A string with any password in a URL (user info or ``password=`` query) masked."""
    return masked_url(value) if "://" in value else value


def mask_secrets(node: Any) -> Any:
    """A copy of a JSON-like structure with secret-looking keys and URL passwords replaced by ``***``."""
    if isinstance(node, dict):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            if isinstance(key, str) and is_secret_key(key) and value not in (None, "", MASK):
                out[key] = MASK
            else:
                out[key] = mask_secrets(value)
        return out
    if isinstance(node, list):
        return [mask_secrets(v) for v in node]
    if isinstance(node, str):
        return mask_value(node)
    return node
