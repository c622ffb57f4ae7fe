"""Import ``function_app.py`` and turn its registrations into devhost's binding table.

Contract:

* :func:`import_app` imports ``function_app.py`` from the app directory (which goes first on
  ``sys.path``, as the Python worker arranges) and returns the one ``FunctionRegister``
  (``func.FunctionApp``) instance it defines.
* :func:`build_table` calls ``app.get_functions()`` exactly once (a second call raises in
  azure-functions) and builds one :class:`FunctionEntry` per function from its
  ``get_trigger()``, ``get_bindings()``, ``get_function_name()`` and ``get_user_function()``.
* The parameter rules are the Python worker's: every parameter must be a binding (or
  ``context``), every non-``$return`` binding must be a parameter, an ``out`` binding may only
  be annotated ``func.Out[...]``. Breaking one is a :class:`LoadError` at startup, as it
  would be a ``FunctionLoadError`` in Azure; catching it here beats catching it after deploy.
* Trigger and binding types devhost cannot run are a :class:`LoadError` naming the function
  and the type; nothing is silently ignored.
* SDK-type ("deferred") bindings are recognised as the worker recognises them: a parameter
  whose annotation the extension registry (``azurefunctions.extensions.base``) calls an SDK
  type. Only a ``blobTrigger`` may have one here (the blob extension's ``BlobClient``,
  ``ContainerClient``, ``StorageStreamDownloader``); the type must be one the binding's
  converter accepts, else the worker's ``FunctionLoadError`` becomes a :class:`LoadError`.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.function_app import FunctionRegister

HTTP_TRIGGER = "httpTrigger"
SERVICE_BUS_TRIGGER = "serviceBusTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
BLOB_TRIGGER = "blobTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, SERVICE_BUS_TRIGGER, EVENT_GRID_TRIGGER, BLOB_TRIGGER)

HTTP_OUTPUT = "http"
EVENT_GRID_OUTPUT = "eventGrid"
SERVICE_BUS_OUTPUT = "serviceBus"
QUEUE_OUTPUT = "queue"
SUPPORTED_OUTPUTS = (HTTP_OUTPUT, EVENT_GRID_OUTPUT, SERVICE_BUS_OUTPUT, QUEUE_OUTPUT)


class LoadError(Exception):
    """The app cannot be hosted as written; the message names the function and the problem."""


@dataclass(frozen=True)
class Binding:
    """One binding in function.json terms: camelCase properties, direction ``in``/``out``."""

    name: str
    type: str
    direction: str
    props: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)


@dataclass(frozen=True)
class FunctionEntry:
    name: str
    trigger: Binding
    outputs: tuple[Binding, ...]  # every "out" binding, "$return" included
    user_function: Callable[..., Any]
    is_async: bool
    requires_context: bool
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def return_binding(self) -> Binding | None:
        return next((b for b in self.outputs if b.name == "$return"), None)

    @property
    def full_name(self) -> str:
        """The host's function id, used in logs and blob receipts."""
        return f"Host.Functions.{self.name}"

    @property
    def log_name(self) -> str:
        return f"Functions.{self.name}"


def import_app(app_dir: Path) -> FunctionRegister:
    script = app_dir / "function_app.py"
    if not script.is_file():
        raise LoadError(f"no function_app.py in {app_dir}")
    root = str(app_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location("function_app", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)  # errors propagate with their traceback: the user's bug
    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if not apps:
        raise LoadError(f"{script} defines no azure.functions.FunctionApp instance")
    if len(apps) > 1:
        raise LoadError(f"{script} defines {len(apps)} FunctionApp instances; the worker allows exactly one")
    return apps[0]


def _plain(value: Any) -> Any:
    """Binding properties as function.json would carry them (enums as their values)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _binding(raw: Any) -> Binding:
    props = raw.get_dict_repr()
    direction = props.get("direction")
    direction_name = direction.name.lower() if isinstance(direction, enum.Enum) else str(direction).lower()
    clean = {k: _plain(v) for k, v in props.items() if k not in ("direction", "type", "name")}
    return Binding(name=props["name"], type=str(props["type"]), direction=direction_name, props=clean)


def build_table(app: FunctionRegister) -> list[FunctionEntry]:
    functions = app.get_functions()  # once: azure-functions raises on a second call
    entries: list[FunctionEntry] = []
    seen: set[str] = set()
    for function in functions:
        name = function.get_function_name()
        if not name:
            raise LoadError("a function has no name")
        if name.lower() in seen:
            raise LoadError(f"function name {name!r} is used twice; names must be unique across blueprints")
        seen.add(name.lower())
        trigger_raw = function.get_trigger()
        if trigger_raw is None:
            raise LoadError(f"function {name!r} has no trigger")
        trigger = _binding(trigger_raw)
        if trigger.type not in SUPPORTED_TRIGGERS:
            raise LoadError(
                f"function {name!r}: trigger type {trigger.type!r} is not supported by devhost "
                f"(supported: {', '.join(SUPPORTED_TRIGGERS)})"
            )
        bindings = [_binding(b) for b in function.get_bindings()]
        outputs: list[Binding] = []
        for binding in bindings:
            if binding.name == trigger.name and binding.type == trigger.type:
                continue
            if binding.direction != "out":
                raise LoadError(
                    f"function {name!r}: {binding.direction} binding {binding.name!r} of type {binding.type!r} "
                    f"is not supported by devhost (only the trigger may be an input)"
                )
            if binding.type not in SUPPORTED_OUTPUTS:
                raise LoadError(
                    f"function {name!r}: output binding {binding.name!r} of type {binding.type!r} is not "
                    f"supported by devhost (supported outputs: {', '.join(SUPPORTED_OUTPUTS)})"
                )
            if binding.type == HTTP_OUTPUT and trigger.type != HTTP_TRIGGER:
                raise LoadError(f"function {name!r}: an http output needs an httpTrigger")
            outputs.append(binding)
        user_function = function.get_user_function()
        annotations, requires_context = _check_parameters(name, user_function, trigger, outputs)
        entries.append(FunctionEntry(
            name=name,
            trigger=trigger,
            outputs=tuple(outputs),
            user_function=user_function,
            is_async=inspect.iscoroutinefunction(user_function),
            requires_context=requires_context,
            annotations=annotations,
        ))
    return entries


def _is_out(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, func.Out)


def _check_parameters(
    name: str, user_function: Callable[..., Any], trigger: Binding, outputs: list[Binding]
) -> tuple[dict[str, Any], bool]:
    params = dict(inspect.signature(user_function).parameters)
    try:
        annotations = typing.get_type_hints(user_function)
    except Exception:  # unresolvable forward references: the worker would fail the same way later
        annotations = dict(getattr(user_function, "__annotations__", {}))
    bound = {trigger.name: trigger, **{b.name: b for b in outputs if b.name != "$return"}}
    requires_context = False
    if "context" in params and "context" not in bound:
        requires_context = True
        params.pop("context")
    extra = set(params) - set(bound)
    if extra:
        raise LoadError(
            f"cannot load the {name} function: the following parameters are declared in Python but not in "
            f"the function definition (function.json or function decorators): {extra!r}"
        )
    missing = set(bound) - set(params)
    if missing:
        raise LoadError(
            f"cannot load the {name} function: the following parameters are declared in the function "
            f"definition but not in Python: {missing!r}"
        )
    for param_name, binding in bound.items():
        annotation = annotations.get(param_name)
        if annotation is None:
            continue
        if binding.direction == "out" and not _is_out(annotation):
            raise LoadError(
                f"cannot load the {name} function: binding {param_name} is declared to have the \"out\" "
                f"direction, but its annotation in Python is not a subclass of azure.functions.Out"
            )
        if binding.direction != "out" and _is_out(annotation):
            raise LoadError(
                f"cannot load the {name} function: binding {param_name} is declared to have the \"in\" "
                f"direction, but its annotation is azure.functions.Out in Python"
            )
        if binding.direction != "out" and is_sdk_type(annotation):
            _check_sdk_type(name, param_name, binding, annotation)
    return annotations, requires_context


def _sdk_registry() -> Any | None:
    """The extensions' converter registry, as the worker loads it; None without the base package."""
    try:
        import azurefunctions.extensions.base as extensions
    except ImportError:
        return None
    return extensions.get_binding_registry()


def is_sdk_type(annotation: Any) -> bool:
    """True when the worker would ask the host for model binding data (an SDK-type binding)."""
    registry = _sdk_registry()
    return registry is not None and bool(registry.check_supported_type(annotation))


def sdk_converter(binding_type: str) -> Any | None:
    """The extension converter registered for a binding type (``blobTrigger`` → ``BlobClientConverter``)."""
    registry = _sdk_registry()
    return registry.get(binding_type) if registry is not None else None


def _check_sdk_type(name: str, param_name: str, binding: Binding, annotation: Any) -> None:
    if binding.type != BLOB_TRIGGER:
        raise LoadError(
            f"function {name!r}: parameter {param_name} is an SDK-type binding ({annotation!r}) on a "
            f"{binding.type!r} binding; devhost supports SDK types for blobTrigger only"
        )
    converter = sdk_converter(binding.type)
    try:
        accepted = converter is not None and bool(converter.check_input_type_annotation(annotation))
    except TypeError:  # e.g. list[BlobClient]: the converter only takes classes
        accepted = False
    if not accepted:
        raise LoadError(
            f"cannot load the {name} function: type of {param_name} binding in function.json "
            f"\"{binding.type}\" does not match its Python annotation \"{getattr(annotation, '__name__', annotation)}\""
        )
