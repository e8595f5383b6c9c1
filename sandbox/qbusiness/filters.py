"""What narrows a ChatSync turn: its `attributeFilter` and `chatMode`, refused as Q Business refuses them and
applied to the index's document attributes.

Three checks, each a ValidationException (400) like AWS's:
- `check_members`: the members as the caller sent them, read with botocore's own service model and
  ParamValidator, so unknown members, wrong types and unions with other than one member are refused even
  from a client that skipped its own validation (botocore checks them client-side; a raw request does not).
- `check_filter`: what the model documents but its shapes cannot say: a filter sets exactly one operator
  (combine several with andAllFilters), a list operator lists at least one filter, and each operator takes only
  the value types Q supports for it (containsAll/containsAny a stringListValue; the comparisons a longValue or
  dateValue).
- `check_chat_mode`: PLUGIN_MODE needs a plugin (this stand-in has none); chatModeConfiguration only goes with it.

`matches` then decides, per document, whether its attributes satisfy a checked filter: a document without the
named attribute never matches, and a string attribute counts as a one-element list for containsAll/containsAny.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.validate import ParamValidator

from sandbox.qbusiness.corpus import AttributeValue
from sandbox.qbusiness.restjson import validation_error

CHECKED_MEMBERS = ("attributeFilter", "chatMode", "chatModeConfiguration")
LOGICAL = ("andAllFilters", "orAllFilters", "notFilter")
# The value types each operator accepts, as the AttributeFilter documentation lists them.
VALUE_TYPES: dict[str, tuple[str, ...]] = {
    "equalsTo": ("stringValue", "stringListValue", "longValue", "dateValue"),
    "containsAll": ("stringListValue",),
    "containsAny": ("stringListValue",),
    "greaterThan": ("longValue", "dateValue"),
    "greaterThanOrEquals": ("longValue", "dateValue"),
    "lessThan": ("longValue", "dateValue"),
    "lessThanOrEquals": ("longValue", "dateValue"),
}
OPERATORS = (*LOGICAL, *VALUE_TYPES)

Filter = Mapping[str, Any]


@functools.cache
def _model() -> ServiceModel:
    return ServiceModel(Loader().load_service_model("qbusiness", "service-2", "2023-11-27"), "qbusiness")


def check_members(application_id: str, body: bytes) -> None:
    """The ChatSync members that narrow a turn, exactly as sent, against botocore's model of ChatSync."""
    try:
        document = json.loads(body) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return  # not JSON at all: the rest-json reader refuses it as a SerializationException
    sent = {name: document[name] for name in CHECKED_MEMBERS if isinstance(document, dict) and name in document}
    if not sent:
        return
    shape = _model().operation_model("ChatSync").input_shape
    assert shape is not None
    report = ParamValidator().validate({"applicationId": application_id, **sent}, shape)
    if report.has_errors():
        problems = report.generate_report().splitlines()
        count = len(problems)
        raise validation_error(
            f"{count} validation error{'' if count == 1 else 's'} detected: " + "; ".join(problems),
            *[(_member_of(problem), problem) for problem in problems],
        )


def _member_of(problem: str) -> str:
    return next((name for name in CHECKED_MEMBERS if name in problem), "request")


def check_filter(node: Filter, path: str = "attributeFilter") -> None:
    """One operator per filter, lists not empty, each operator with a value type Q supports for it."""
    if len(node) != 1:
        raise validation_error(
            f"{path} must set exactly one of {', '.join(OPERATORS)}; combine conditions with andAllFilters.",
            (path, "Member must have exactly one operator set"),
        )
    ((operator, operand),) = node.items()
    if operator in ("andAllFilters", "orAllFilters"):
        if not operand:
            raise validation_error(
                f"{path}.{operator} must list at least one filter.", (f"{path}.{operator}", "Member must not be empty")
            )
        for index, child in enumerate(operand, 1):
            check_filter(child, f"{path}.{operator}.{index}.member")
    elif operator == "notFilter":
        check_filter(operand, f"{path}.notFilter")
    else:
        (kind,) = operand["value"]  # the union already holds exactly one member
        if kind not in VALUE_TYPES[operator]:
            supported = " or ".join(VALUE_TYPES[operator])
            raise validation_error(
                f"{path}.{operator} supports only {supported} document attribute values, not {kind}.",
                (f"{path}.{operator}.value", f"Member must be {supported}"),
            )


def check_chat_mode(params: Mapping[str, Any]) -> None:
    """chatModeConfiguration only with PLUGIN_MODE, and PLUGIN_MODE only with a plugin id."""
    mode = params.get("chatMode")
    configuration = params.get("chatModeConfiguration")
    if mode != "PLUGIN_MODE":
        if configuration is not None:
            raise validation_error(
                "chatModeConfiguration is only valid with chatMode PLUGIN_MODE.",
                ("chatModeConfiguration", "Member must be null unless chatMode is PLUGIN_MODE"),
            )
        return
    plugin = ((configuration or {}).get("pluginConfiguration") or {}).get("pluginId")
    if plugin is None:
        raise validation_error(
            "chatModeConfiguration.pluginConfiguration.pluginId is required for chatMode PLUGIN_MODE.",
            ("chatModeConfiguration", "Member must not be null"),
        )
    # whether the plugin exists is the application's to say (plugins.SandboxPlugins.chosen)


def matches(node: Filter, attributes: Mapping[str, AttributeValue]) -> bool:
    """Whether a document with these attributes passes a filter `check_filter` accepted."""
    ((operator, operand),) = node.items()
    if operator == "andAllFilters":
        return all(matches(child, attributes) for child in operand)
    if operator == "orAllFilters":
        return any(matches(child, attributes) for child in operand)
    if operator == "notFilter":
        return not matches(operand, attributes)
    have = attributes.get(operand["name"])
    ((kind, want),) = operand["value"].items()
    if have is None:
        return False
    if operator == "equalsTo":
        if kind == "stringListValue":
            return isinstance(have, tuple) and set(have) == set(want)
        return type(have) is type(want) and have == want
    if operator in ("containsAll", "containsAny"):
        present = {have} if isinstance(have, str) else set(have) if isinstance(have, tuple) else set()
        return set(want) <= present if operator == "containsAll" else bool(present & set(want))
    return _compares(operator, have, want)


def _compares(operator: str, have: AttributeValue, want: int | datetime) -> bool:
    if isinstance(want, datetime) and isinstance(have, datetime):
        left: Any = have
    elif isinstance(want, int) and isinstance(have, int) and not isinstance(have, bool):
        left = have
    else:
        return False  # a long never compares with a date or a string
    if operator == "greaterThan":
        return bool(left > want)
    if operator == "greaterThanOrEquals":
        return bool(left >= want)
    if operator == "lessThan":
        return bool(left < want)
    return bool(left <= want)
