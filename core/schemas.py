"""Optional JSON Schemas per event name, declared on a policy rule and checked on every publish.

    options = { schemas = { "order-updated" = { type = "object", required = ["id"] } } }

Checked for REST publishes and client events on channels the rule governs. jsonschema is imported
only when a policy declares a schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from core.errors import ConfigurationError, InvalidPayload

if TYPE_CHECKING:
    from core.policy import Policy
    from core.policy.rules import Rule


class EventSchemas:
    """Validators per (rule, event name), compiled when the policy loads."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._validators: dict[tuple[int, str], Any] = {}
        for rule in policy.rules:
            table = rule.options.get("schemas", {})
            where = f"{policy.source}: rule #{rule.index} ({rule.pattern}) options.schemas"
            if not isinstance(table, dict):
                raise ConfigurationError(f"{where} must be a table of event name = schema")
            for event, schema in table.items():
                self._validators[(rule.index, event)] = _compile(schema, f"{where}.{event}")

    def check(self, channel: str, event: str, data: str) -> None:
        """Raise InvalidPayload unless the data fits the schema declared for this event here."""
        if self._validators:
            self.check_rule(self._policy.rule_for(channel), event, data)

    def check_rule(self, rule: Rule | None, event: str, data: str) -> None:
        """`check` for a channel already matched to `rule` (None: no rule governs it)."""
        validator = None if rule is None else self._validators.get((rule.index, event))
        if validator is None:
            return
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = data  # a plain string event: the schema decides whether strings are fine
        error = next(iter(validator.iter_errors(value)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            # The schema's complaint about a location, never the offending value itself.
            raise InvalidPayload(
                f"data does not match the schema of {event!r} at {where}: {error.validator} "
                "check failed",
                event=event,
            )


def _compile(schema: Any, where: str) -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigurationError(f"{where} is not a valid JSON Schema: {exc.message}") from exc
    return Draft202012Validator(schema)
