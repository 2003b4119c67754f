"""What a view shows of an instance's next steps: the events allowed from its state
and the payload fields each one takes (to build a form or document an API). Shared by
the Flask and Django integrations; imports no framework."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import BaseModel

from statekit.engine import Machine
from statekit.errors import InvalidPayloadError

__all__ = [
    "RESERVED_FIELDS",
    "EventInfo",
    "PayloadField",
    "events_from",
    "payload_from",
    "refuse_payload",
]

RESERVED_FIELDS = frozenset({"actor", "correlation_id", "idempotency_key"})
"""`Runner.fire`'s own keyword arguments: never payload fields, so a request's data
can neither pass them (the history's actor, say) nor clash with them."""


def refuse_payload(machine: Machine, entity: object, event: str, errors: list[str]) -> NoReturn:
    """Raise the `InvalidPayloadError` of `event` on `entity` with `errors`."""
    raise InvalidPayloadError(
        entity_type=machine.name,
        key=machine.key_of(entity),
        state=machine.state_of(entity),
        event=event,
        allowed_events=machine.allowed_events(entity),
        errors=errors,
    )


def payload_from(machine: Machine, entity: object, event: str, data: object) -> dict[str, Any]:
    """A request's `data` (a JSON body, a form) as the payload of `event`, for
    `Runner.fire(entity, event, **payload)`.

    Raises:
        InvalidPayloadError: `data` is not a mapping, or names one of `RESERVED_FIELDS`.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        refuse_payload(
            machine, entity, event, [f"(payload): must be an object of fields, not {kind}"]
        )
    reserved = sorted(RESERVED_FIELDS.intersection(data))
    if reserved:
        refuse_payload(
            machine, entity, event, [f"{name}: reserved, not a payload field" for name in reserved]
        )
    return dict(data)


@dataclass(frozen=True)
class PayloadField:
    """One field of an event's payload.

    Attributes:
        name: The field's name (the payload key).
        type: Its JSON Schema type ("string", "number", "integer", "boolean", ...;
            "string" where the schema names none).
        required: Whether the payload must carry it.
        default: Its default when not required (JSON-ready), else None.
        choices: The values allowed, for an enum or `Literal` field.
        title: A label for a form (the field's title, else its name).
        description: The field's description, if any.
    """

    name: str
    type: str
    required: bool
    default: Any = None
    choices: tuple[Any, ...] = ()
    title: str = ""
    description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The field as JSON-ready data."""
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "choices": list(self.choices),
            "title": self.title,
            "description": self.description,
        }


@dataclass(frozen=True)
class EventInfo:
    """An event allowed from an instance's state, with its payload's fields."""

    name: str
    fields: tuple[PayloadField, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return {"name": self.name, "fields": [f.as_dict() for f in self.fields]}


def events_from(machine: Machine, state: str | None) -> list[EventInfo]:
    """The events declared from `state` (guards not evaluated), in declaration order,
    each with its payload's fields; empty for an unknown state."""
    if state is None:
        return []
    return [
        EventInfo(event, payload_fields(machine.payload_models.get(event)))
        for event in machine.events_from(state)
    ]


def payload_fields(model: type[BaseModel] | None) -> tuple[PayloadField, ...]:
    """The fields of a payload model, read from its JSON Schema."""
    if model is None:
        return ()
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    definitions = schema.get("$defs", {})
    found = []
    for name, spec in schema.get("properties", {}).items():
        spec = _resolved(spec, definitions)
        choices = tuple(spec.get("enum", ()))
        if "const" in spec:
            choices = (spec["const"],)
        found.append(
            PayloadField(
                name=name,
                type=_type_of(spec, definitions),
                required=name in required,
                default=spec.get("default"),
                choices=choices,
                title=spec.get("title", name),
                description=spec.get("description"),
            )
        )
    return tuple(found)


def _resolved(spec: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    reference = spec.get("$ref", "")
    if reference.startswith("#/$defs/"):
        return {**definitions.get(reference.removeprefix("#/$defs/"), {}), **spec}
    return spec


def _type_of(spec: dict[str, Any], definitions: dict[str, Any]) -> str:
    if isinstance(spec.get("type"), str):
        return str(spec["type"])
    for option in spec.get("anyOf", ()):  # Optional[X], X | Y: the first non-null type
        found = _resolved(option, definitions).get("type")
        if isinstance(found, str) and found != "null":
            return found
    return "string"
