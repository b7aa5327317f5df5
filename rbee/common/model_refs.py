"""The public form of a model ref: what names its workers, catalog entry, logs and metrics.

An `https://` ref may carry a query string (a pre-signed S3/GCS link): the query is a
credential, so everything shown or logged uses the URL without it, and only the hive's
download sees the whole ref. Every other ref is its own public form.
"""

from __future__ import annotations


def public_ref(ref: str) -> str:
    """`ref` without the query string of an `https://` URL."""
    if ref.startswith("https://"):
        return ref.partition("?")[0]
    return ref


def has_secret(ref: str) -> bool:
    """True when `ref` carries a query string that must not be shown."""
    return public_ref(ref) != ref
