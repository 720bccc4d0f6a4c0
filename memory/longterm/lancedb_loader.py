"""LanceDB, imported once for the whole package, at about half what a plain `import lancedb` costs.

`lancedb` imports `lance_namespace`, whose generated REST client defines about 150 pydantic models and
decorates about 370 methods with `pydantic.validate_call`; pydantic builds a validator for each as the
class is defined. That was 2.7-3.0 s of a 5 s server start on a 2-core machine, for a client an embedded
index never calls. While `lancedb` is imported here, `validate_call` builds each validator on the method's
first call instead, and models defined by that import build theirs on first use (`defer_build`): every
check still runs, only later, and not at all for code that is never called. Both pydantic settings are
back as they were once the import returns, whatever it raised. Every module here imports LanceDB's names
from this one, so whichever comes first takes this path.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import pydantic


def _deferred_validate_call(real: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for `pydantic.validate_call` that builds the real wrapper on the first call."""

    def decorate(func: Any = None, /, **options: Any) -> Any:
        if func is None:  # the `@validate_call(config=...)` form
            return lambda f: decorate(f, **options)
        built: Callable[..., Any] | None = None

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal built
            if built is None:
                built = real(func, **options)
            return built(*args, **kwargs)

        return call

    return decorate


def _import_deferred() -> None:
    real_validate_call = pydantic.validate_call
    config = pydantic.BaseModel.model_config
    had_defer, old_defer = "defer_build" in config, config.get("defer_build", False)
    pydantic.validate_call = _deferred_validate_call(real_validate_call)  # type: ignore[assignment]
    config["defer_build"] = True
    try:
        import lancedb  # noqa: F401 - loaded for the names below
    finally:
        pydantic.validate_call = real_validate_call  # type: ignore[assignment]
        if had_defer:
            config["defer_build"] = old_defer
        else:
            config.pop("defer_build", None)


_import_deferred()

import lancedb  # noqa: E402 - each already loaded by the call above
from lancedb.index import FTS, BTree  # noqa: E402
from lancedb.query import ColumnOrdering  # noqa: E402

__all__ = ["BTree", "ColumnOrdering", "FTS", "lancedb"]
