"""Finding a machine's named callables and payload models.

A spec names its guards, conditions, actions, effects, compensations and payload
models by string. A `Resolver` looks them up in what the application passed as
`handlers` (a mapping, any object's attributes, or a list of those searched in
order) and, failing that, in the entity class's methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from statekit.branches import Handler
from statekit.records import Context

__all__ = ["Resolver"]

_MISSING = object()


class Resolver:
    """Resolves the names of a spec for `Machine`.

    Args:
        handlers: A mapping of name to object, any object (module, class) whose
            attributes are looked up, or a list of those searched in order.
        entity_type: Optional entity class; names not found in `handlers` resolve to
            its methods, called as `entity.method(context)`.
    """

    def __init__(self, handlers: object = None, entity_type: type | None = None) -> None:
        self._lookup = _lookup_in(handlers)
        self.entity_type = entity_type

    def resolve_object(self, name: str) -> object:
        """What `name` stands for (a handler, or an entity method as a handler).

        Raises:
            LookupError: nothing is called `name`.
        """
        found = self._lookup(name)
        if found is not _MISSING:
            return found
        if self.entity_type is not None and callable(getattr(self.entity_type, name, None)):
            return _entity_method(name)
        raise LookupError(name)

    def resolve(self, name: str) -> Handler:
        """The handler called `name` (checked callable by `exists` beforehand)."""
        handler = self.resolve_object(name)
        return handler  # type: ignore[return-value]  # checked callable by exists

    def handler_to_check(self, name: str) -> Callable[..., object] | None:
        """The function behind `name` as the signature check should see it."""
        found = self._lookup(name)
        if found is not _MISSING:
            return found if callable(found) else None
        method = getattr(self.entity_type, name, None)
        return method if callable(method) else None

    def exists(self, kind: str, name: str) -> bool:
        """Whether `name` resolves to what a `kind` ("payload", "guard", ...) needs."""
        if kind == "payload":
            found = self._lookup(name)
            return isinstance(found, type) and issubclass(found, BaseModel)
        try:
            return callable(self.resolve_object(name))
        except LookupError:
            return False

    def payload_model(self, name: str | None) -> type[BaseModel] | None:
        """The payload model called `name` (None for None)."""
        if name is None:
            return None
        model = self._lookup(name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):  # pragma: no cover
            raise LookupError(name)  # reference_problems rejected this already
        return model


def _lookup_in(handlers: object) -> Callable[[str], object]:
    """Build a name lookup over a mapping, an object's attributes, or a list/tuple of
    such sources searched in order."""
    if handlers is None:
        return lambda name: _MISSING
    if isinstance(handlers, Mapping):
        mapping: Mapping[str, object] = handlers
        return lambda name: mapping.get(name, _MISSING)
    if isinstance(handlers, list | tuple):
        lookups = [_lookup_in(source) for source in handlers]

        def chained(name: str) -> object:
            for lookup in lookups:
                found = lookup(name)
                if found is not _MISSING:
                    return found
            return _MISSING

        return chained
    return lambda name: getattr(handlers, name, _MISSING)


def _entity_method(name: str) -> Handler:
    def call(entity: Any, ctx: Context) -> Any:
        return getattr(entity, name)(ctx)

    call.__name__ = name
    return call
