"""Secrets out of pages: the UI masks whatever configuration the supervisor sends once more.

The supervisor already masks (``InstanceConfig.dump_public``), with the same rule: both use
:mod:`dagd.masking`, so the CLI, the API and the UI cannot disagree on what is secret. Masking again
here costs nothing and protects a page from an older supervisor that masked less.
"""

from __future__ import annotations

from dagd.masking import MASK, is_secret_key, mask_secrets, mask_value

__all__ = ["MASK", "is_secret_key", "mask_secrets", "mask_value"]
