"""Strict JSON types for API request bodies. DRF guesses: it reads `123` as the text "123", "5" as 5,
`0`/`1` and "true" as booleans and an integer as a UUID. A partner whose client sends the wrong type
must hear so, so a JSON body is checked against the types its serializer (and so the schema) states
before DRF reads it: 400 `invalid_type` naming every field at fault.

Form and multipart bodies and query strings carry only text by nature; they keep DRF's parsing. The
JSON parser marks what it decoded (`JSONBody`), and only marked data is checked, so a portal form that
hands the same serializer the strings it was typed still works.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.settings import api_settings

from config.error_codes import KernelErrors

INVALID_TYPE = KernelErrors.INVALID_TYPE
# A decimal as the schema's pattern has it: digits with an optional point, no exponent or spaces.
_DECIMAL_TEXT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)\Z")


class JSONBody(dict):
    """A request body's top-level object as the JSON parser decoded it: the mark that its types are
    checked strictly (config.parsers.JSONParser returns it)."""


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "null" if value is None else type(value).__name__


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    # As JSON Schema counts: 5.0 is an integer (some encoders write whole floats that way); 5.5 is not,
    # and DRF refuses it as a value.
    return _is_number(value) and (isinstance(value, int) or value.is_integer())


def type_error(expected: str, value) -> list:
    """A field's errors for `value` where `expected` (such as "a string") was due."""
    return [ErrorDetail(f"Expected {expected}, got {_json_type(value)}.", code=INVALID_TYPE)]


def _schema_field(field):
    """The field the schema documents for `field`: a DictField or JSONField annotated with
    `extend_schema_field(SomeSerializer)` is checked as that serializer."""
    annotated = getattr(field, "_spectacular_annotation", {}).get("field")
    if isinstance(annotated, type) and issubclass(annotated, serializers.Field):
        return annotated()
    return annotated if isinstance(annotated, serializers.Field) else field


def _choice_error(field: serializers.ChoiceField, value):
    kinds = {type(choice) for choice in field.choices}
    if kinds == {str}:
        return None if isinstance(value, str) else type_error("a string", value)
    if kinds == {int}:
        return None if _is_integer(value) else type_error("an integer", value)
    return None  # mixed choices: DRF's own matching decides


def _items_errors(child, items: list):
    errors = {index: error for index, item in enumerate(items)
              if (error := json_type_errors(child, item)) is not None}
    return errors or None


def json_type_errors(field, value):
    """Where `value` (decoded JSON) has another type than `field` takes, shaped as DRF's own errors (a
    list for a field, a dict by name for an object's fields and by index for an array's items); None
    when every type is right. Null is no type error: the field's `allow_null` decides."""
    if value is None:
        return None
    field = _schema_field(field)
    if isinstance(field, serializers.ListSerializer):
        if not isinstance(value, list):
            return type_error("an array", value)
        return _items_errors(field.child, value)
    if isinstance(field, serializers.Serializer):
        if not isinstance(value, Mapping):
            return type_error("an object", value)
        errors = {}
        for name, subfield in field.fields.items():
            if subfield.read_only or name not in value:
                continue
            error = json_type_errors(subfield, value[name])
            if error is not None:
                errors[name] = error
        return errors or None
    if isinstance(field, serializers.MultipleChoiceField):
        if not isinstance(value, list):
            return type_error("an array", value)
        errors = {index: error for index, item in enumerate(value) if (error := _choice_error(field, item))}
        return errors or None
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return type_error("an array", value)
        return _items_errors(field.child, value)
    if isinstance(field, serializers.DictField):
        if not isinstance(value, Mapping):
            return type_error("an object", value)
        errors = {key: error for key, item in value.items()
                  if (error := json_type_errors(field.child, item)) is not None}
        return errors or None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else type_error("a boolean (true or false)", value)
    if isinstance(field, serializers.ChoiceField):
        return _choice_error(field, value)
    if isinstance(field, serializers.DecimalField):
        if not getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING):
            return None if _is_number(value) else type_error("a number", value)
        if not isinstance(value, str):
            return type_error('a decimal string such as "12.50"', value)
        return None if _DECIMAL_TEXT.match(value) else [
            ErrorDetail('Expected a decimal string such as "12.50".', code=INVALID_TYPE)]
    if isinstance(field, serializers.IntegerField):
        return None if _is_integer(value) else type_error("an integer", value)
    if isinstance(field, serializers.FloatField):
        return None if _is_number(value) else type_error("a number", value)
    if isinstance(field, (serializers.CharField, serializers.UUIDField, serializers.DateTimeField,
                          serializers.DateField, serializers.TimeField, serializers.DurationField)):
        return None if isinstance(value, str) else type_error("a string", value)
    return None  # JSONField and the like take any JSON; files never come in JSON


def only_type_errors(codes) -> bool:
    """Whether the codes of a ValidationError (`exc.get_codes()`) are all `invalid_type`."""
    leaves: set[str] = set()

    def collect(node):
        if isinstance(node, Mapping):
            for child in node.values():
                collect(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                collect(child)
        else:
            leaves.add(node)

    collect(codes)
    return leaves == {INVALID_TYPE}


# The three classes below carry comments, not docstrings: drf-spectacular shows the first docstring of a
# serializer's bases as its description in the API docs.


class StrictJSONInput:
    # For the serializer of a request body: a JSON body's types are checked before DRF reads it. Only
    # the body's own serializer checks (it covers the nested ones), and only a JSONBody.

    def to_internal_value(self, data):
        if isinstance(data, JSONBody) and self.parent is None:
            errors = json_type_errors(self, data)
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class StrictSerializer(StrictJSONInput, serializers.Serializer):
    pass  # the base of every API input serializer


class StrictModelSerializer(StrictJSONInput, serializers.ModelSerializer):
    pass  # a ModelSerializer that reads a request body
