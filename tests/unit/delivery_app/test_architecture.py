"""Imports point inward: rules and use cases never touch an Azure SDK (STYLE.md habit 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ["ingestion", "package", "drone_scheduler", "delivery", "notifications"]
PURE = [f"{service}/{module}.py" for service in SERVICES for module in ("domain", "service", "ports", "messages")
        if (ROOT / service / f"{module}.py").exists()]
PURE += [f"choreography/{name}.py" for name in ("contracts", "messaging", "errors", "handling", "reason_codes",
                                                 "settings", "idempotency", "tracing", "clock", "entities")]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what ``path`` imports (relative imports resolved against its package)."""
    package = path.parent.name
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                modules.add(node.module)
            elif node.level == 1:
                modules |= ({f"{package}.{node.module}"} if node.module
                            else {f"{package}.{alias.name}" for alias in node.names})
    return modules


@pytest.mark.parametrize("relative", PURE)
def test_no_azure_imports(relative: str):
    assert not {m for m in imported_modules(ROOT / relative) if m == "azure" or m.startswith("azure.")}


@pytest.mark.parametrize("service", SERVICES)
def test_domain_modules_do_no_io_and_know_no_other_layer(service: str):
    path = ROOT / service / "domain.py"
    outer_layers = {f"{service}.{m}" for m in ("service", "handlers", "adapters", "bootstrap")}
    forbidden = {"requests", "aiohttp", "socket", "os"} | outer_layers
    assert not imported_modules(path) & forbidden
