"""Cooperative cancellation shared by training and long analyses."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside long work when its CancelToken was set."""


class CancelToken:
    """A thread-safe flag that long loops poll between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")
