"""Client-side helpers for daemon-to-daemon HTTP calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from rbee.common.errors import ApiError


async def raise_for_error(response: aiohttp.ClientResponse, peer: str) -> None:
    """Turn a non-2xx answer from another rbee daemon into the same ApiError."""
    if response.status < 300:
        return
    try:
        error = json.loads(await response.read())["error"]
        code, message, details = error["code"], error["message"], error.get("details", {})
    except (ValueError, KeyError, TypeError):
        code, message, details = "UPSTREAM_ERROR", f"{peer} answered HTTP {response.status}", {}
    headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else {}
    raise ApiError(response.status, code, message, details, headers)


Headers = Callable[[], dict[str, str]]
"""Computes the headers of each call (so a reloaded token is used from the next call on)."""


def no_headers() -> dict[str, str]:
    """No extra headers (a peer in dev mode)."""
    return {}


async def get_json(
    session: aiohttp.ClientSession, url: str, peer: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """GET a JSON object from another daemon, mapping its errors."""
    async with session.get(url, headers=headers) as response:
        await raise_for_error(response, peer)
        return await response.json()


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    peer: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a JSON object to another daemon and return its JSON answer, mapping its errors."""
    async with session.post(url, json=body, headers=headers) as response:
        await raise_for_error(response, peer)
        return await response.json()
