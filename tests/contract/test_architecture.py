"""The house rules, read from the code's own imports (``ast``: nothing is imported or run).

* A service imports no other service: services share the contracts (``contracts/``) and the
  shared core (``choreography/``), never each other's modules. ``wiring.py``, outside every
  service, is the one place that hands a service another's in-process interface.
* The shared core and the contracts import no service.
* Business rules (``domain`` modules) and use cases (``service`` modules) import no ``azure.*``:
  adapters do. A payment ``domain`` module imports no ``formats`` module (formats read and write
  files for the rules, not the other way round).
* No app module grows past :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT

SERVICES = ("ingestion", "package", "drone_scheduler", "delivery", "notifications", "file_pipeline", "remediation")
SHARED = ("choreography", "contracts")
# A module a reader can hold in their head at once; the payment pipeline's largest use cases and
# rule sets fit in well under it once split by step and by concern.
MAX_LINES = 600


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield dotted.removesuffix(".__init__"), path


def imported(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, relative imports resolved to absolute names."""
    names: set[str] = set()
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package_parts[: len(package_parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def top(name: str) -> str:
    return name.split(".", 1)[0]


APP = [(package, module, path) for package in (*SERVICES, *SHARED) for module, path in modules(package)]


@pytest.mark.parametrize(("package", "module", "path"), [a for a in APP if a[0] in SERVICES],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_service_imports_no_other_service(package: str, module: str, path: Path) -> None:
    others = sorted({name for name in imported(module, path) if top(name) in SERVICES and top(name) != package})
    assert others == [], f"{module} imports another service: {others}; share a contract instead"


@pytest.mark.parametrize(("package", "module", "path"), [a for a in APP if a[0] in SHARED],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_the_shared_core_and_the_contracts_import_no_service(package: str, module: str, path: Path) -> None:
    services = sorted({name for name in imported(module, path) if top(name) in SERVICES})
    assert services == [], f"{module} imports a service: {services}"


def _rules_and_use_cases() -> list[tuple[str, Path]]:
    return [(module, path) for _, module, path in APP
            if {"domain", "service"} & set(module.split(".")[1:])]


@pytest.mark.parametrize(("module", "path"), _rules_and_use_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_rules_and_use_cases_import_no_azure_sdk(module: str, path: Path) -> None:
    sdk = sorted(name for name in imported(module, path) if top(name) == "azure")
    assert sdk == [], f"{module} imports {sdk}: only adapters talk to Azure"


@pytest.mark.parametrize(("module", "path"), [(m, p) for _, m, p in APP if m.startswith("file_pipeline.domain")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_payment_rules_import_no_file_format(module: str, path: Path) -> None:
    formats = sorted(name for name in imported(module, path) if name.startswith("file_pipeline.formats"))
    assert formats == [], f"{module} imports {formats}"


def test_no_app_module_is_longer_than_the_limit() -> None:
    long = {module: n for _, module, path in APP
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_the_rules_see_what_they_check() -> None:
    """The checks above would pass on an empty tree: make sure they read real imports."""
    delivery_service = ROOT / "delivery" / "service.py"
    names = imported("delivery.service", delivery_service)
    assert "contracts.deliveries" in names and "delivery.domain" in names
    assert "delivery" in {top(n) for n in imported("wiring", ROOT / "wiring.py")}
    assert len(APP) > 50
