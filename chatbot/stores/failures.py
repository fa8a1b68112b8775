"""A store that cannot read or save says so in words, whichever store it is.

Each store names the driver errors it translates and how to explain them; `translating` makes every public
method of the store raise StoreUnavailable with that explanation, so pages, the socket and an answer being
written all meet one kind of failure, and show it with what to do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class StoreUnavailable(Exception):
    """The conversations cannot be read or saved now; str() is the whole message for the user."""


def translating(errors: tuple[type[BaseException], ...], explain: Callable[[Any, BaseException], str]):  # type: ignore[no-untyped-def]
    """A class decorator: the store's public methods raise StoreUnavailable(explain(store, error)) for `errors`."""

    def decorate(cls: type) -> type:
        for name, method in list(vars(cls).items()):
            if callable(method) and not name.startswith("_"):
                setattr(cls, name, _translated(method, errors, explain))
        return cls

    return decorate


def _translated(method, errors, explain):  # type: ignore[no-untyped-def]
    @functools.wraps(method)
    def call(store, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return method(store, *args, **kwargs)
        except errors as error:
            raise StoreUnavailable(explain(store, error)) from error

    return call
