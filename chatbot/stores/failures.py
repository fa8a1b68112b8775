"""A store that cannot read or save says so in words, whichever store it is.

Each store names the driver errors it translates and how to explain them; `translating` makes every public
method of the store raise StoreUnavailable with that explanation, so pages, the socket and an answer being
written all meet one kind of failure, and show it with what to do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

StoreClass = TypeVar("StoreClass", bound=type)
Explain = Callable[[Any, BaseException], str]


class StoreUnavailable(Exception):
    """The conversations cannot be read or saved now; str() is the whole message for the user."""


def translating(errors: tuple[type[BaseException], ...], explain: Explain) -> Callable[[StoreClass], StoreClass]:
    """A class decorator: the store's public methods, its own and those it inherits (chatbot/stores/sql.py), raise
    StoreUnavailable(explain(store, error)) for `errors`."""

    def decorate(cls: StoreClass) -> StoreClass:
        for name in dir(cls):
            method = getattr(cls, name)
            if callable(method) and not name.startswith("_"):
                setattr(cls, name, _translated(method, errors, explain))
        return cls

    return decorate


def _translated(
    method: Callable[..., Any], errors: tuple[type[BaseException], ...], explain: Explain
) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(store: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(store, *args, **kwargs)
        except errors as error:
            raise StoreUnavailable(explain(store, error)) from error

    return call
