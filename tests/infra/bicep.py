"""Reading infra/ offline: every ``.bicep`` file parsed with pycep-parser, and a small evaluator
for the expressions the Service Bus modules use (property access on a loop item, ``contains``,
``?:`` and string interpolation), enough to render the entities those modules would deploy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
_INTERPOLATION = re.compile(r"\$\{([^}]+)\}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def parse(path: Path) -> dict[str, Any]:
    result = BicepParser().parse(text=path.read_text(encoding="utf-8"))
    assert isinstance(result, dict), f"{path}: pycep returned {type(result).__name__}"
    return result


def accessor_chain(node: Any) -> list[str]:
    """``a.b.?c`` as ``["a", "b", "c"]`` (pycep drops the ``?``: a missing key is null either way)."""
    if isinstance(node, str):
        return node.replace("?", "").split(".")
    operator = node.get("operator", {}) if isinstance(node, dict) else {}
    if operator.get("type") != "property_accessor":
        raise ValueError(f"not a property access: {node!r}")
    return accessor_chain(operator["operands"]["operand_1"]) + accessor_chain(operator["operands"]["operand_2"])


def _lookup(chain: list[str], scope: dict[str, Any]) -> Any:
    if chain[0] not in scope:
        raise KeyError(f"{'.'.join(chain)}: {chain[0]!r} is not in scope ({sorted(scope)})")
    value = scope[chain[0]]
    for key in chain[1:]:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def evaluate(node: Any, scope: dict[str, Any]) -> Any:
    """The value ARM would receive for ``node``, with loop items and parameters in ``scope``.
    Null-valued properties are left out, as ARM treats them as not given."""
    if node is None or isinstance(node, bool | int | float):
        return node
    if isinstance(node, str):
        if "${" in node:
            return _INTERPOLATION.sub(lambda m: str(_lookup(accessor_chain(m.group(1)), scope)), node)
        return node
    if isinstance(node, list):
        return [evaluate(item, scope) for item in node]
    if "operator" in node:
        operator = node["operator"]
        if operator["type"] == "property_accessor":
            return _lookup(accessor_chain(node), scope)
        if operator["type"] == "conditional":
            operands = operator["operands"]
            branch = operands["true_value"] if evaluate(operands["condition"], scope) else operands["false_value"]
            return evaluate(branch, scope)
        raise ValueError(f"operator {operator['type']!r} is not supported here")
    if "function" in node:
        function = node["function"]
        if function["type"] == "contains":
            container = evaluate(function["parameters"]["container"], scope)
            return isinstance(container, dict) and function["parameters"]["item_to_find"] in container
        raise ValueError(f"function {function['type']!r} is not supported here")
    rendered = {key: evaluate(value, scope) for key, value in node.items()}
    return {key: value for key, value in rendered.items() if value is not None}
