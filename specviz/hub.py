"""Whether the Hugging Face hub can be reached, so a name that is not cached fails at once.

Offline, huggingface_hub retries every request with back-off (about 50 s for a model, 25 s for a
dataset) before it gives up. :func:`hub_offline` answers first: ``HF_HUB_OFFLINE`` is set, or a
TCP connection to the hub endpoint (``HF_ENDPOINT``, default https://huggingface.co) fails within
``PROBE_TIMEOUT_S``. The probe runs once per process. :func:`offline_mode` then makes
``datasets`` read its local cache only, so a cached dataset still loads and a missing one fails
in a second.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0


@functools.cache
def _reachable(endpoint: str) -> bool:
    url = urlsplit(endpoint)
    if not url.hostname:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_offline() -> bool:
    """True when the hub is off limits (``HF_HUB_OFFLINE``) or cannot be reached."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or not _reachable(constants.ENDPOINT)


@contextlib.contextmanager
def offline_mode() -> Iterator[None]:
    """huggingface_hub and datasets in offline mode (local cache only) for the block."""
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved
