"""Secrets out of anything shown: the one rule for what is masked, used by every reader.

``InstanceConfig.dump_public`` (``dagctl instance info``, the API's ``config_json``), the web UI's
configuration page (:mod:`dagd.webserver.masking`, which masks what the supervisor sent once more)
and config error messages (which never echo a secret value) all decide here. Custom coordinator
and launcher sections are free-form, so the rule goes by key name *and* by value shape: a key such
as ``aws_secret_access_key`` is masked, and so is a password inside any URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"

# Substrings of key names whose values are secret ("db_password", "slack_webhook_token", ...).
_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential", "private_key")
# Keys that name a file holding a secret: the path itself is not secret and helps debugging.
_PATH_SUFFIXES = ("_file", "_path")


def is_secret_key(key: str) -> bool:
    """True for a key whose value must not be shown (``token``, ``aws_secret_access_key``, ...)."""
    lowered = key.lower()
    if lowered.endswith(_PATH_SUFFIXES):
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def masked_url(url: str) -> str:
    """``url`` with any password (in the user info or a ``password=`` query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: it might still hold a password, show nothing
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            netloc = f"{user}:{MASK}@{hostport}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # untouched: avoid urlunsplit's normalisations
    return parts._replace(netloc=netloc, query=query).geturl()


def mask_value(value: str) -> str:
    """A string with any password in a URL (user info or ``password=`` query) masked."""
    return masked_url(value) if "://" in value else value


def mask_secrets(node: Any) -> Any:
    """A copy of a JSON-like structure with secret keys' values and URL passwords replaced by
    ``***``. Unset values (None, "") stay as they are: that a secret is *not* set is worth seeing."""
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
