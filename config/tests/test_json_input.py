"""Strict JSON types (config.json_input): what each kind of field takes from a JSON body, and that
form data and Python callers keep DRF's reading. Every operation is walked in test_api_schemathesis."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.json_input import INVALID_TYPE, JSONBody, StrictSerializer, json_type_errors, only_type_errors
from config.parsers import JSONParser


class Inner(serializers.Serializer):
    count = serializers.IntegerField(required=False)
    flag = serializers.BooleanField(required=False)


@extend_schema_field(Inner)
class InnerAsDict(serializers.DictField):
    """An object field whose schema is Inner: checked as Inner."""


class Everything(StrictSerializer):
    text = serializers.CharField(required=False)
    email = serializers.EmailField(required=False)
    uuid = serializers.UUIDField(required=False)
    when = serializers.DateTimeField(required=False)
    count = serializers.IntegerField(required=False)
    ratio = serializers.FloatField(required=False)
    money = serializers.DecimalField(max_digits=8, decimal_places=2, required=False, allow_null=True)
    flag = serializers.BooleanField(required=False)
    choice = serializers.ChoiceField(choices=["a", "b"], required=False)
    number_choice = serializers.ChoiceField(choices=[1, 2], required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    scores = serializers.DictField(child=serializers.IntegerField(), required=False)
    inner = Inner(required=False)
    inners = Inner(many=True, required=False)
    annotated = InnerAsDict(required=False)
    anything = serializers.JSONField(required=False)
    shown = serializers.CharField(read_only=True)


def _errors(data: dict):
    serializer = Everything(data=JSONBody(data))
    assert not serializer.is_valid()
    return serializer.errors


@pytest.mark.parametrize("data, message", [
    ({"text": 123}, "Expected a string, got a number."),
    ({"email": True}, "Expected a string, got a boolean."),
    ({"uuid": 5}, "Expected a string, got a number."),  # DRF read it as UUID(int=5)
    ({"when": 1700000000}, "Expected a string, got a number."),
    ({"count": "5"}, "Expected an integer, got a string."),
    ({"count": True}, "Expected an integer, got a boolean."),  # bool is an int in Python
    ({"ratio": "0.5"}, "Expected a number, got a string."),
    ({"money": 12.5}, 'Expected a decimal string such as "12.50", got a number.'),
    ({"money": "1e3"}, 'Expected a decimal string such as "12.50".'),
    ({"flag": 1}, "Expected a boolean (true or false), got a number."),
    ({"flag": "true"}, "Expected a boolean (true or false), got a string."),
    ({"choice": ["a"]}, "Expected a string, got an array."),
    ({"number_choice": "1"}, "Expected an integer, got a string."),
    ({"tags": "a,b"}, "Expected an array, got a string."),
    ({"scores": []}, "Expected an object, got an array."),
    ({"inner": "x"}, "Expected an object, got a string."),
    ({"inners": {}}, "Expected an array, got an object."),
])
def test_a_value_of_another_json_type_is_named(data, message):
    [(name, value)] = data.items()
    errors = _errors(data)
    assert errors == {name: [message]}
    assert errors[name][0].code == INVALID_TYPE


def test_nested_values_are_named_where_they_are():
    errors = _errors({"tags": ["ok", 7], "scores": {"a": 1, "b": "2"}, "inner": {"flag": 0},
                      "inners": [{"count": 1}, {"count": "2"}], "annotated": {"count": "3"}})
    assert errors == {
        "tags": {1: ["Expected a string, got a number."]},
        "scores": {"b": ["Expected an integer, got a string."]},
        "inner": {"flag": ["Expected a boolean (true or false), got a number."]},
        "inners": {1: {"count": ["Expected an integer, got a string."]}},
        "annotated": {"count": ["Expected an integer, got a string."]},
    }


def _codes(errors):
    return serializers.ValidationError(errors).get_codes()


def test_right_types_pass_on_to_the_other_rules():
    data = {"text": "t", "email": "a@example.test", "uuid": "6f1c2a4e-8d7b-4d5e-9f00-1234567890ab",
            "when": "2026-01-01T00:00:00Z", "count": 5.0, "ratio": 1, "money": "12.50", "flag": False,
            "choice": "a", "number_choice": 2, "tags": ["x"], "scores": {"a": 1}, "inner": {"count": 1},
            "inners": [{"flag": True}], "annotated": {"flag": True}, "anything": [1, "x", {"y": None}],
            "shown": 123}  # a read-only field is ignored, as DRF does
    serializer = Everything(data=JSONBody(data))
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["count"] == 5  # 5.0 is an integer, as JSON Schema counts
    assert serializer.validated_data["money"] == Decimal("12.50")


def test_null_is_left_to_allow_null():
    assert json_type_errors(serializers.CharField(), None) is None
    serializer = Everything(data=JSONBody({"money": None, "text": None}))
    assert not serializer.is_valid()
    assert serializer.errors == {"text": ["This field may not be null."]}
    assert serializer.errors["text"][0].code == "null"


def test_other_problems_keep_their_codes():
    assert only_type_errors(_codes(_errors({"count": "5", "flag": 1})))
    serializer = Everything(data=JSONBody({"choice": "c"}))
    assert not serializer.is_valid() and not only_type_errors(_codes(serializer.errors))
    assert not only_type_errors({"a": ["invalid_type"], "b": ["required"]})


def test_form_data_and_python_callers_keep_drf_reading():
    """A form or multipart body (a QueryDict) is text by nature, and the portal hands serializers
    the strings it was typed (generation.portal.new_job.JobNewForm.payload): neither is a JSONBody."""
    form = QueryDict("count=5&flag=true&text=123&ratio=0.5")
    for data in (form, {"count": "5", "flag": "true", "text": 123, "ratio": "0.5"}):
        serializer = Everything(data=data)
        assert serializer.is_valid(), serializer.errors
        assert serializer.validated_data["count"] == 5 and serializer.validated_data["flag"] is True


def test_the_json_parser_marks_an_object_body():
    parser = JSONParser()
    assert isinstance(parser.parse(io.BytesIO(b'{"a": 1}')), JSONBody)
    assert type(parser.parse(io.BytesIO(b"[1]"))) is list
