"""Unit tests for the Service Bus emulator's rule filters and actions (pure, no broker)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from emulators.servicebus.filters import (
    TRUE_FILTER,
    FilterError,
    MessageView,
    compile_correlation_filter,
    compile_rule,
    compile_sql_action,
    compile_sql_filter,
)


def view(system=None, **user):
    return MessageView(system=dict(system or {}), user=dict(user))


def matches(expression, v):
    return compile_sql_filter(expression)(v)


# --------------------------------------------------------------------------- properties and scopes


def test_sys_prefix_reads_system_properties():
    v = view({"MessageId": "123", "To": "orders"})
    assert matches("sys.MessageId = '123'", v)
    assert matches("sys.To = 'orders'", v)
    assert not matches("sys.MessageId = '124'", v)


def test_user_prefix_and_no_prefix_read_application_properties():
    v = view({"MessageId": "m"}, color="red")
    assert matches("user.color = 'red'", v)
    assert matches("color = 'red'", v)
    # an application property does not shadow a system one and vice versa
    assert not matches("MessageId = 'm'", v)


def test_bracketed_and_quoted_property_names():
    v = view(**{"Property With Space": 1, "HR-EmployeeID": "e1", "a]b": 2, "Contoso & Northwind": 3})
    assert matches("[Property With Space] = 1", v)
    assert matches("user.[HR-EmployeeID] = 'e1'", v)
    assert matches("[a]]b] = 2", v)
    assert matches('"Contoso & Northwind" = 3', v)


def test_reserved_word_as_property_name_needs_brackets():
    v = view(**{"select": 1, "in": 2})
    assert matches("[in] = 2", v)
    assert matches("select = 1", v)  # not a Service Bus keyword
    with pytest.raises(FilterError, match="reserved words"):
        compile_sql_filter("in = 2")


def test_property_names_are_case_insensitive():
    v = view({"MessageId": "x", "Label": "lbl"}, Color="red")
    assert matches("color = 'red'", v)
    assert matches("USER.COLOR = 'red'", v)
    assert matches("sys.messageid = 'x'", v)
    assert matches("SYS.LABEL = 'lbl'", v)


def test_exact_case_application_property_wins():
    v = view(color="exact", COLOR="other")
    assert matches("color = 'exact'", v)


def test_keywords_and_functions_are_case_insensitive():
    v = view(a=1, b="xyz")
    assert matches("a = 1 and b like 'x%' Or not exists(c) AND c is null", v)
    assert matches("P('a') = 1 AND Property('b') = 'xyz'", v)
    assert matches("a In (1, 2) and b NoT lIkE 'q%'", v)


def test_label_and_subject_are_the_same_system_property():
    assert matches("sys.Label = 'hello'", view({"Label": "hello"}))
    assert matches("sys.Subject = 'hello'", view({"Label": "hello"}))
    assert matches("sys.Label = 'hello'", view({"Subject": "hello"}))


def test_uuid_system_ids_compare_as_strings():
    mid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert matches("sys.MessageId = '12345678-1234-5678-1234-567812345678'", view({"MessageId": mid}))


def test_numeric_system_properties():
    v = view({"SequenceNumber": 42, "DeliveryCount": 1, "Size": 100})
    assert matches("sys.SequenceNumber > 40 AND sys.DeliveryCount = 1 AND sys.Size <= 100", v)


def test_datetime_system_property_and_arithmetic():
    t = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    v = view({"EnqueuedTimeUtc": t, "TimeToLive": timedelta(minutes=5)}, sent=t - timedelta(seconds=30))
    assert matches("sys.EnqueuedTimeUtc > sent", v)
    assert matches("sys.EnqueuedTimeUtc - sent < sys.TimeToLive", v)
    assert matches("sent + sys.TimeToLive > sys.EnqueuedTimeUtc", v)


# --------------------------------------------------------------------------- literals


def test_string_literal_with_escaped_quote_and_unicode():
    assert matches("name = 'O''Brien'", view(name="O'Brien"))
    assert matches("name = 'Zoë ✓'", view(name="Zoë ✓"))
    assert matches("name = ''", view(name=""))


def test_integer_decimal_and_scientific_literals():
    v = view(i=1894, d=1894.1204, big=10150000.0, small=0.005)
    assert matches("i = 1894", v)
    assert matches("d = 1894.1204", v)
    assert matches("big = 101.5E5", v)
    assert matches("small = 0.5e-2", v)
    assert matches("i = 1894.0 AND i = 18.94E2", v)
    assert matches("d > .5", v)


def test_boolean_literals():
    v = view(flag=True, other=False)
    assert matches("flag = TRUE AND other = false", v)
    assert not matches("flag = FALSE", v)


def test_null_literal_is_unknown_in_comparisons():
    v = view(a=None, b=1)
    assert not matches("b = NULL", v)
    assert not matches("NOT b = NULL", v)
    assert not matches("b <> NULL", v)


def test_int64_limits():
    v = view(lo=-(2**63), hi=2**63 - 1)
    assert matches("lo = -9223372036854775808 AND hi = 9223372036854775807", v)
    with pytest.raises(FilterError, match="64-bit"):
        compile_sql_filter("hi = 9223372036854775808")


# --------------------------------------------------------------------------- comparison operators


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("n = 5", True),
        ("n <> 5", False),
        ("n != 4", True),
        ("n > 4", True),
        ("n >= 5", True),
        ("n < 5", False),
        ("n <= 5", True),
        ("s = 'b'", True),
        ("s > 'a'", True),
        ("s < 'B'", False),  # ordinal: 'b' (0x62) > 'B' (0x42)
        ("s = 'B'", False),  # string equality is case-sensitive
    ],
)
def test_comparison_operators(expr, expected):
    assert matches(expr, view(n=5, s="b")) is expected


def test_numeric_promotion_between_int_and_float():
    v = view(i=10, f=10.0, g=10.5)
    assert matches("i = f", v)
    assert matches("i = 10.0", v)
    assert matches("f = 10", v)
    assert matches("g > i", v)
    assert matches("i + 0.5 = g", v)


def test_incompatible_types_are_unknown_not_errors():
    v = view(s="10", n=10, b=True, g=uuid.uuid4(), raw=b"x", weird=object(), lst=[1])
    for expr in ["s = 10", "n = '10'", "b = 1", "n > 'a'", "g = 'x'", "raw > 1", "weird = 1", "lst = 1"]:
        assert not matches(expr, v), expr
        assert not matches(f"NOT ({expr})", v), expr


def test_ordering_on_booleans_and_guids_is_unknown():
    g = uuid.uuid4()
    v = view(b=True, g=g, g2=g)
    assert not matches("b > FALSE", v)
    assert not matches("NOT b > FALSE", v)
    assert matches("g = g2", v)
    assert not matches("g > g2", v)


def test_naive_vs_aware_datetimes_do_not_crash():
    v = view(a=datetime(2024, 1, 1), b=datetime(2024, 1, 1, tzinfo=UTC))
    assert not matches("a < b", v)
    assert not matches("NOT a < b", v)


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 * 3 = 7", True),
        ("(1 + 2) * 3 = 9", True),
        ("10 - 4 - 3 = 3", True),  # left associative
        ("7 / 2 = 3", True),  # integer division
        ("-7 / 2 = -3", True),  # truncates toward zero (C#)
        ("7 % 3 = 1", True),
        ("-7 % 2 = -1", True),  # remainder takes the dividend's sign (C#)
        ("7 % -2 = 1", True),
        ("7.0 / 2 = 3.5", True),
        ("7.5 % 2 = 1.5", True),
        ("-(2 + 3) = -5", True),
        ("- -4 = 4", True),
        ("+4 = 4", True),
        ("2 * -3 = -6", True),
        ("1 / 0 = 1", False),  # integer division by zero: unknown
        ("NOT 1 / 0 = 1", False),
        ("1.0 / 0 > 1000000", True),  # float: +infinity
        ("-1.0 / 0 < -1000000", True),
        ("9223372036854775807 + 1 = -9223372036854775808", True),  # 64-bit wrap
        ("'ab' + 'cd' = 'abcd'", True),
    ],
)
def test_arithmetic(expr, expected):
    assert matches(expr, view()) is expected


def test_arithmetic_on_properties():
    v = view(quantity=10, price=2.5)
    assert matches("quantity * price = 25.0", v)
    assert matches("quantity % 3 = 1", v)
    assert matches("quantity / 4 = 2", v)


def test_arithmetic_with_missing_or_incompatible_operand_is_unknown():
    v = view(s="x", n=1)
    for expr in ["missing + 1 = 1", "s + 1 = 1", "s * 2 = 2", "-s = 1", "n + TRUE = 2"]:
        assert not matches(expr, v), expr
        assert not matches(f"NOT {expr}", v), expr


# --------------------------------------------------------------------------- logic and three-valued logic


def test_and_or_not_precedence():
    v = view(a=1, b=2, c=3)
    # AND binds tighter than OR
    assert matches("a = 0 AND b = 0 OR c = 3", v)
    assert not matches("a = 0 AND (b = 0 OR c = 3)", v)
    # NOT binds tighter than AND
    assert matches("NOT a = 0 AND b = 2", v)
    assert not matches("NOT (a = 1 AND b = 2)", v)
    assert matches("NOT NOT a = 1", v)
    assert matches("((a = 1))", v)


T, F, U = "1 = 1", "1 = 0", "missing = 1"


@pytest.mark.parametrize(
    ("left", "right", "and_result", "or_result"),
    [
        (T, T, True, True),
        (T, F, False, True),
        (T, U, None, True),
        (F, T, False, True),
        (F, F, False, False),
        (F, U, False, None),
        (U, T, None, True),
        (U, F, False, None),
        (U, U, None, None),
    ],
)
def test_three_valued_truth_tables(left, right, and_result, or_result):
    """The AND/OR tables from the Azure docs; None (unknown) is told apart via NOT."""

    def truth(expr):
        if matches(expr, view()):
            return True
        if matches(f"NOT ({expr})", view()):
            return False
        return None

    assert truth(f"{left} AND {right}") is and_result
    assert truth(f"{left} OR {right}") is or_result


def test_missing_property_comparisons_never_match_either_way():
    v = view()
    for op in ["=", "<>", "!=", ">", ">=", "<", "<="]:
        assert not matches(f"missing {op} 1", v)
        assert not matches(f"NOT missing {op} 1", v)


def test_missing_system_property_is_null():
    v = view({"MessageId": "m"})
    assert not matches("sys.To = 'x'", v)
    assert not matches("sys.To <> 'x'", v)
    assert matches("sys.To IS NULL", v)


def test_long_and_or_chains():
    v = view(a=1, b=2, c=3, d=4)
    assert matches("a = 1 AND b = 2 AND c = 3 AND d = 4", v)
    assert not matches("a = 1 AND b = 2 AND c = 0 AND d = 4", v)
    assert matches("a = 0 OR b = 0 OR c = 0 OR d = 4", v)
    assert not matches("a = 0 OR missing = 1 OR c = 0", v)
    assert not matches("NOT (a = 0 OR missing = 1 OR c = 0)", v)


# --------------------------------------------------------------------------- IN


def test_in_and_not_in():
    v = view(store="Store2", n=3)
    assert matches("store IN ('Store1', 'Store2', 'Store3')", v)
    assert not matches("store IN ('Store4')", v)
    assert matches("store NOT IN ('Store4', 'Store5')", v)
    assert not matches("store NOT IN ('Store2')", v)
    assert matches("n IN (1, 2, 3)", v)
    assert matches("n IN (3.0)", v)  # numeric promotion
    assert matches("n IN (1 + 1, n)", v)  # expressions are allowed


def test_in_with_missing_left_operand_is_unknown():
    v = view()
    assert not matches("missing IN ('a')", v)
    assert not matches("missing NOT IN ('a')", v)


def test_in_does_not_mix_types():
    v = view(flag=True, s="1", n=1)
    assert not matches("flag IN (1)", v)
    assert not matches("s IN (1)", v)
    assert not matches("n IN ('1')", v)
    assert matches("n NOT IN ('1', NULL)", v)


def test_in_with_system_property():
    v = view({"To": "Store6"}, StoreId="x")
    assert matches("sys.To IN ('Store5','Store6','Store7') OR StoreId = 'Store8'", v)


# --------------------------------------------------------------------------- LIKE


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("'%bus%'", True),
        ("'service%'", True),
        ("'%bus'", False),
        ("'service_bus_topic'", True),
        ("'service_bus'", False),
        ("'_ervice%'", True),
        ("'%'", True),
        ("'SERVICE%'", False),  # case-sensitive
        ("'service.bus%'", False),  # regex metacharacters are literal
    ],
)
def test_like_wildcards(pattern, expected):
    assert matches(f"sys.Label LIKE {pattern}", view({"Label": "service-bus-topic"})) is expected


def test_not_like():
    v = view(name="alpha")
    assert matches("name NOT LIKE 'b%'", v)
    assert not matches("name NOT LIKE 'a%'", v)


def test_like_escape():
    assert matches(r"p LIKE 'ABC\%' ESCAPE '\'", view(p="ABC%"))
    assert not matches(r"p LIKE 'ABC\%' ESCAPE '\'", view(p="ABCD"))
    assert matches("p LIKE 'a!_b' ESCAPE '!'", view(p="a_b"))
    assert not matches("p LIKE 'a!_b' ESCAPE '!'", view(p="axb"))
    assert matches("p LIKE 'a!!b' ESCAPE '!'", view(p="a!b"))


def test_like_special_characters_and_newlines():
    assert matches("p LIKE 'a.*b%'", view(p="a.*b\nmore"))
    assert matches("p LIKE '(x)[y]%'", view(p="(x)[y]z"))


def test_like_with_unknown_or_non_string_operand_is_unknown():
    v = view(n=12)
    assert not matches("missing LIKE 'a%'", v)
    assert not matches("missing NOT LIKE 'a%'", v)
    assert not matches("n LIKE '1%'", v)
    assert not matches("n NOT LIKE '1%'", v)


def test_like_with_dynamic_pattern():
    v = view(name="order-42", prefix="order-")
    assert matches("name LIKE prefix + '%'", v)
    assert not matches("name LIKE missing + '%'", v)


# --------------------------------------------------------------------------- IS NULL / EXISTS


def test_is_null_and_is_not_null():
    v = view(present=1, nulled=None)
    assert matches("missing IS NULL", v)
    assert matches("nulled IS NULL", v)
    assert not matches("present IS NULL", v)
    assert matches("present IS NOT NULL", v)
    assert not matches("nulled IS NOT NULL", v)
    assert matches("[present] IS NOT NULL", v)


def test_exists_and_not_exists():
    v = view({"To": "x"}, present=1, nulled=None)
    assert matches("EXISTS(present)", v)
    assert matches("EXISTS (user.nulled)", v)  # exists, with a null value
    assert not matches("EXISTS(missing)", v)
    assert matches("NOT EXISTS(missing)", v)
    assert matches("EXISTS(PRESENT)", v)
    assert matches("EXISTS(sys.To) AND NOT EXISTS(sys.ReplyTo)", v)


# --------------------------------------------------------------------------- functions


def test_property_function():
    v = view({"To": "dest"}, color="red", **{"odd name": 5})
    assert matches("property('color') = 'red'", v)
    assert matches("p('odd name') = 5", v)
    assert matches("property('sys.To') = 'dest'", v)
    assert matches("property('user.' + 'color') = 'red'", v)
    assert not matches("property('missing') = 1", v)
    with pytest.raises(FilterError, match="unknown system property"):
        compile_sql_filter("property('sys.Nope') = 1")
    with pytest.raises(FilterError, match="needs a property name"):
        compile_sql_filter("property(5) = 1")


def test_property_function_with_computed_name():
    v = view(which="color", color="red")
    assert matches("property(which) = 'red'", v)
    assert not matches("property(missing) = 'red'", v)


def test_newid_returns_a_fresh_guid():
    v = view()
    assert matches("newid() <> newid()", v)
    assert not matches("newid() = newid()", v)
    assert not matches("newid() = 'x'", v)  # a GUID is not a string


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expression", "fragment", "position"),
    [
        ("a = ", "expected a value, found end of expression", 5),
        ("a = 1 AND", "expected a value, found end of expression", 10),
        ("(a = 1", "expected ')'", 7),
        ("a = 1)", "unexpected ')'", 6),
        ("a == 1", "'==' is not an operator", 3),
        ("a = 'oops", "unterminated string", 5),
        ("[oops = 1", "unterminated name", 1),
        ("sys.Foo = 1", "unknown system property 'sys.Foo'", 5),
        ("a = @param", "parameters (@name) are not supported", 5),
        ("foo(1) = 2", "unknown function 'foo'", 1),
        ("TRUE", "expected a condition as the filter", 1),
        ("flag", "expected a condition", 1),
        ("NOT flag", "expected a condition after NOT", 5),
        ("a = 1 AND b", "expected a condition after AND", 11),
        ("a = 1 b", "unexpected 'b'", 7),
        ("a = 1 = 2", "unexpected '='", 7),
        ("a + 1 IS NULL", "IS [NOT] NULL needs a property name", 1),
        ("a IS 5", "expected NULL after IS", 6),
        ("a IN ()", "at least one value in IN", 7),
        ("a LIKE 5", "LIKE pattern must be a string", 8),
        ("a LIKE 'x' ESCAPE 'ab'", "exactly one character", 19),
        ("a LIKE 'x!' ESCAPE '!'", "ends with its escape character", 8),
        ("_a = 1", "cannot start with '_'", 1),
        ("1abc = 1", "malformed number", 1),
        ("a = 1 # 2", "unexpected character '#'", 7),
        ("EXISTS(1)", "expected a property name inside EXISTS", 8),
        ("x.y = 1", "unknown scope 'x'", 1),
        ("", "the expression is empty", 1),
        ("a = (b = 1)", "expected a value after '='", 5),
        ("-'x' = 1", "unary '-' needs a number", 1),
    ],
)
def test_filter_errors_name_problem_and_position(expression, fragment, position):
    with pytest.raises(FilterError) as info:
        compile_sql_filter(expression)
    message = str(info.value)
    assert fragment in message
    assert f"at position {position} " in message
    assert "\n" not in message
    assert info.value.position == position
    assert isinstance(info.value, ValueError)


def test_multiline_expression_error_stays_one_line():
    with pytest.raises(FilterError) as info:
        compile_sql_filter("a = 1\nAND\n")
    assert "\n" not in str(info.value)
    assert "position 11" in str(info.value)


def test_non_string_expression_is_rejected():
    with pytest.raises(FilterError):
        compile_sql_filter(None)  # type: ignore[arg-type]


def test_evaluation_never_raises():
    f = compile_sql_filter("a / b > 1 OR a LIKE b OR a IN (b) OR -a = b OR a % b = 0")
    for a, b in [(1, 0), ("x", None), (object(), 1), (2**70, 0.0), (b"x", b"y"), ([1], {}), (1.5, 0)]:
        assert f(view(a=a, b=b)) in (True, False)


def test_filters_are_compiled_once_and_fast():
    v = view({"MessageId": "123", "Label": "orders"}, userProp1="value1", quantity=7)
    expression = "sys.MessageId = '123' AND userProp1 = 'value1' AND quantity > 5 AND sys.Label LIKE 'ord%'"
    f = compile_sql_filter(expression)
    assert compile_sql_filter(expression) is f  # cached compilation
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        f(v)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 50e-6  # microseconds, not a parse per message


def test_true_filter():
    assert TRUE_FILTER(view()) is True
    assert matches("1=1", view())


# --------------------------------------------------------------------------- correlation filters


def test_correlation_filter_system_properties():
    f = compile_correlation_filter({"CorrelationId": "id1", "Label": "subject1", "To": "xyz"})
    assert f(view({"CorrelationId": "id1", "Label": "subject1", "To": "xyz", "MessageId": "m"}))
    assert not f(view({"CorrelationId": "id1", "Label": "subject1"}))  # To missing
    assert not f(view({"CorrelationId": "id1", "Label": "other", "To": "xyz"}))


def test_correlation_filter_all_system_keys():
    spec = {
        "CorrelationId": "c",
        "MessageId": "m",
        "To": "t",
        "ReplyTo": "r",
        "Label": "l",
        "SessionId": "s",
        "ReplyToSessionId": "rs",
        "ContentType": "application/json",
    }
    f = compile_correlation_filter(spec)
    system = dict(spec)
    assert f(view(system))
    for key in spec:
        changed = dict(system, **{key: "different"})
        assert not f(view(changed)), key


def test_correlation_filter_user_properties():
    f = compile_correlation_filter({"Properties": {"prop3": "value3", "priority": 5, "urgent": True}})
    assert f(view(prop3="value3", priority=5, urgent=True, extra="ignored"))
    assert f(view(prop3="value3", priority=5.0, urgent=True))  # numeric promotion
    assert not f(view(prop3="value3", priority=5))  # urgent missing
    assert not f(view(prop3="value3", priority="5", urgent=True))  # no string/number conversion
    assert not f(view(prop3="value3", priority=5, urgent=1))  # bool is not 1


def test_correlation_filter_system_and_user_properties_together():
    f = compile_correlation_filter(
        {"ReplyTo": "johndoe@contoso.com", "Label": "Important", "Properties": {"color": "Red"}}
    )
    system = {"ReplyTo": "johndoe@contoso.com", "Label": "Important"}
    assert f(view(system, color="Red"))
    assert not f(view(system, color="red"))  # case-sensitive
    assert not f(view({"ReplyTo": "johndoe@contoso.com"}, color="Red"))


def test_correlation_filter_label_and_subject_both_map():
    by_label = compile_correlation_filter({"Label": "red"})
    by_subject = compile_correlation_filter({"Subject": "red"})
    for f in (by_label, by_subject):
        assert f(view({"Label": "red"}))
        assert f(view({"Subject": "red"}))
        assert not f(view({"Label": "Red"}))
    both = compile_correlation_filter({"Label": "red", "Subject": "red"})
    assert both(view({"Label": "red"}))
    with pytest.raises(FilterError, match="disagree"):
        compile_correlation_filter({"Label": "red", "Subject": "blue"})


def test_correlation_filter_uuid_correlation_id():
    cid = uuid.uuid4()
    f = compile_correlation_filter({"CorrelationId": str(cid)})
    assert f(view({"CorrelationId": cid}))


def test_correlation_filter_keys_case_insensitive_and_null_property():
    f = compile_correlation_filter({"correlationId": "c", "properties": {"gone": None}})
    assert f(view({"CorrelationId": "c"}))
    assert f(view({"CorrelationId": "c"}, gone=None))
    assert not f(view({"CorrelationId": "c"}, gone="here"))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({}, "no conditions"),
        ({"Properties": {}}, "no conditions"),
        ({"Color": "red"}, "unknown key 'Color'"),
        ({"CorrelationId": 5}, "must be a string"),
        ({"Properties": ["a"]}, "'Properties' must be an object"),
        ({"Properties": {"x": object()}}, "unsupported value type"),
        ("not a mapping", "expected an object"),
    ],
)
def test_correlation_filter_errors(spec, fragment):
    with pytest.raises(FilterError) as info:
        compile_correlation_filter(spec)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- actions


def test_action_set_user_property():
    v = view(color="red", quantity=10)
    compile_sql_action("SET quantity = quantity / 2")(v)
    assert v.user == {"color": "red", "quantity": 5}
    compile_sql_action("SET source = 'routedOrders'")(v)
    assert v.user["source"] == "routedOrders"


def test_action_set_system_property():
    v = view({"MessageId": "m"})
    compile_sql_action("SET sys.To = 'Entity'")(v)
    assert v.system == {"MessageId": "m", "To": "Entity"}
    compile_sql_action("SET sys.Label = sys.Label + 'x'")(v)  # missing Label: unknown -> cleared
    assert "Label" not in v.system


def test_action_remove():
    v = view({"To": "x"}, priority="high", Color="red")
    compile_sql_action("REMOVE priority; REMOVE user.color; REMOVE sys.To")(v)
    assert v.user == {}
    assert v.system == {}
    compile_sql_action("REMOVE missing")(v)  # removing an absent property is fine


def test_action_multiple_statements_with_and_without_semicolons():
    v = view(color="red", quantity=10, priority="high")
    compile_sql_action("SET quantity = quantity / 2; REMOVE priority;SET sys.CorrelationId = 'low';")(v)
    assert v.user == {"color": "red", "quantity": 5}
    assert v.system == {"CorrelationId": "low"}
    v = view()
    compile_sql_action("SET a = 1 SET b = a + 1 ;; SET c = b * 10")(v)
    assert v.user == {"a": 1, "b": 2, "c": 20}  # statements run in order


def test_action_keywords_case_insensitive_and_existing_key_case():
    v = view(Color="red")
    compile_sql_action("set color = 'blue'; remove NOTHING")(v)
    assert v.user == {"Color": "blue"}


def test_action_unknown_value_stores_null():
    v = view()
    compile_sql_action("SET quantity = missing * 2")(v)
    assert v.user == {"quantity": None}


def test_action_implicit_conversion_to_existing_float():
    v = view(price=1.5)
    compile_sql_action("SET price = 2")(v)
    assert v.user["price"] == 2.0 and isinstance(v.user["price"], float)


def test_action_newid_into_message_id_is_a_string():
    v = view({"MessageId": "old"})
    compile_sql_action("SET sys.MessageId = newid()")(v)
    assert isinstance(v.system["MessageId"], str)
    uuid.UUID(v.system["MessageId"])


def test_action_system_property_type_mismatch_leaves_it_unchanged():
    v = view({"To": "keep"})
    compile_sql_action("SET sys.To = 5")(v)
    assert v.system["To"] == "keep"
    compile_sql_action("SET sys.To = NULL")(v)
    assert "To" not in v.system


def test_action_label_writes_the_key_the_message_uses():
    v = view({"Subject": "old"})
    compile_sql_action("SET sys.Label = 'new'")(v)
    assert v.system == {"Subject": "new"}
    v = view()
    compile_sql_action("SET sys.Subject = 'new'")(v)
    assert v.system == {"Label": "new"}


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "has no SET or REMOVE"),
        (" ; ", "has no SET or REMOVE"),
        ("UPDATE a = 1", "expected SET or REMOVE"),
        ("SET a 1", "expected '='"),
        ("SET a =", "expected a value"),
        ("SET a = 1 = 2", "expected ';', SET, REMOVE or the end"),
        ("SET sys.SequenceNumber = 1", "'sys.SequenceNumber' is read-only"),
        ("SET sys.Nope = 1", "unknown system property 'sys.Nope'"),
        ("REMOVE 'a'", "expected a property name after REMOVE"),
        ("SET a = b = 1", "expected ';', SET, REMOVE or the end"),
    ],
)
def test_action_errors(expression, fragment):
    with pytest.raises(FilterError) as info:
        compile_sql_action(expression)
    assert fragment in str(info.value)
    assert "invalid SQL action" in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- rules (Config.json shape)


def test_compile_rule_correlation_shape():
    rule = {
        "Name": "r1",
        "Properties": {
            "FilterType": "Correlation",
            "CorrelationFilter": {
                "CorrelationId": "id1",
                "Label": "subject1",
                "ContentType": "application/text",
                "MessageId": "msgid1",
                "ReplyTo": "someQueue",
                "ReplyToSessionId": "sessionId",
                "SessionId": "session1",
                "To": "xyz",
                "Properties": {"prop3": "value3"},
            },
        },
    }
    predicate, action = compile_rule(rule)
    assert action is None
    system = {
        "CorrelationId": "id1",
        "Label": "subject1",
        "ContentType": "application/text",
        "MessageId": "msgid1",
        "ReplyTo": "someQueue",
        "ReplyToSessionId": "sessionId",
        "SessionId": "session1",
        "To": "xyz",
    }
    assert predicate(view(system, prop3="value3"))
    assert not predicate(view(system, prop3="other"))


def test_compile_rule_subject_spelling():
    predicate, _ = compile_rule(
        {
            "Name": "s",
            "Properties": {"FilterType": "Correlation", "CorrelationFilter": {"Subject": "subject1"}},
        }
    )
    assert predicate(view({"Label": "subject1"}))


def test_compile_rule_sql_with_action():
    rule = {
        "Name": "r2",
        "Properties": {
            "FilterType": "Sql",
            "SqlFilter": {"SqlExpression": "sys.MessageId = '123' AND userProp1 = 'value1'"},
            "Action": {"SqlExpression": "SET sys.To = 'Entity'"},
        },
    }
    predicate, action = compile_rule(rule)
    v = view({"MessageId": "123"}, userProp1="value1")
    assert predicate(v)
    assert action is not None
    action(v)
    assert v.system["To"] == "Entity"
    assert not predicate(view({"MessageId": "124"}, userProp1="value1"))


def test_compile_rule_keys_case_insensitive_and_null_action():
    predicate, action = compile_rule(
        {
            "name": "r",
            "properties": {"filterType": "sql", "sqlFilter": {"sqlExpression": "a = 1"}, "action": None},
        }
    )
    assert predicate(view(a=1))
    assert action is None


def test_compile_rule_correlation_with_action():
    predicate, action = compile_rule(
        {
            "Name": "ca",
            "Properties": {
                "FilterType": "Correlation",
                "CorrelationFilter": {"CorrelationId": "c"},
                "Action": {"SqlExpression": "SET tagged = TRUE"},
            },
        }
    )
    v = view({"CorrelationId": "c"})
    assert predicate(v)
    action(v)
    assert v.user == {"tagged": True}


@pytest.mark.parametrize(
    ("properties", "fragment"),
    [
        ({"FilterType": "Boolean"}, "unknown FilterType 'Boolean'"),
        ({"SqlFilter": {"SqlExpression": "1=1"}}, "missing FilterType"),
        ({"FilterType": "Sql"}, "'SqlFilter' must be an object"),
        ({"FilterType": "Sql", "SqlFilter": {}}, "'SqlFilter' has no SqlExpression"),
        ({"FilterType": "Sql", "SqlFilter": {"SqlExpression": "  "}}, "is empty"),
        ({"FilterType": "Sql", "SqlFilter": {"SqlExpression": 5}}, "must be a string"),
        ({"FilterType": "Sql", "SqlFilter": {"SqlExpression": "a = "}}, "invalid SQL filter"),
        ({"FilterType": "Sql", "CorrelationFilter": {"CorrelationId": "x"}}, "'SqlFilter' must be an object"),
        ({"FilterType": "Correlation"}, "needs a 'CorrelationFilter' object"),
        ({"FilterType": "Correlation", "CorrelationFilter": {"Bogus": "x"}}, "unknown key 'Bogus'"),
        (
            {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "1=1"}, "Action": {}},
            "'Action' has no SqlExpression",
        ),
        (
            {
                "FilterType": "Sql",
                "SqlFilter": {"SqlExpression": "1=1"},
                "Action": {"SqlExpression": "DROP x"},
            },
            "invalid SQL action",
        ),
    ],
)
def test_compile_rule_errors_name_the_rule(properties, fragment):
    with pytest.raises(FilterError) as info:
        compile_rule({"Name": "bad-rule", "Properties": properties})
    message = str(info.value)
    assert message.startswith("rule 'bad-rule': ")
    assert fragment in message
    assert "\n" not in message


def test_compile_rule_sql_error_keeps_position():
    with pytest.raises(FilterError) as info:
        compile_rule(
            {"Name": "p", "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "sys.Foo = 1"}}}
        )
    assert info.value.position == 5
    assert "position 5" in str(info.value)


def test_compile_rule_missing_properties():
    with pytest.raises(FilterError, match="rule 'x': missing 'Properties'"):
        compile_rule({"Name": "x"})
    with pytest.raises(FilterError, match="expected an object"):
        compile_rule(["not", "a", "rule"])  # type: ignore[arg-type]
