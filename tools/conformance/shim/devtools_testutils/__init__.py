"""Stand-in for Microsoft's ``devtools_testutils`` (azure-sdk-for-python/tools), just enough for
the azure-servicebus tests to run *live* against the emulator.

The real package records and replays HTTP through a test proxy and creates Azure resources with
ARM.  Here nothing is recorded (every test is live), resources are the emulator's entities
(see :mod:`servicebus_preparer` beside this package) and any credential works, because the
emulator accepts every CBS token.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import time
from typing import Any, ClassVar

from azure.core.credentials import AccessToken

RESOURCE_GROUP_PARAM = "resource_group"

# Modules of this shim: a preparer's owning test module is the first frame outside them.
_SHIM_MODULES = ("devtools_testutils", "servicebus_preparer", "sb_env_loader", "functools")


class AzureTestError(Exception):
    pass


class ReservedResourceNameError(AzureTestError):
    pass


class FakeResource:
    def __init__(self, name: str, id: str) -> None:  # noqa: A002 (the real one's signature)
        self.name = name
        self.id = id

    def __repr__(self) -> str:
        return f"FakeResource(name={self.name!r})"


class _Credential:
    """Any token: the emulator's CBS accepts every one."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("conformance-token", int(time.time()) + 3600)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Credential":
        return self

    def __exit__(self, *args: Any) -> None:
        pass


class _AsyncCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("conformance-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> "_AsyncCredential":
        return self

    async def __aexit__(self, *args: Any) -> None:
        pass


def get_credential(is_async: bool = False, **kwargs: Any) -> Any:
    return _AsyncCredential() if is_async else _Credential()


def get_region_override(default: str = "westus") -> str:
    return default


def is_live() -> bool:
    return True


class AzureRecordedTestCase:
    is_live = True
    is_playback = False

    @staticmethod
    def await_prepared_test(test_fn: Any) -> Any:
        """Run a coroutine test to completion on a fresh event loop, as the real one does."""

        @functools.wraps(test_fn)
        def run(test_class_instance: Any, *args: Any, **kwargs: Any) -> Any:
            return asyncio.run(test_fn(test_class_instance, *args, **kwargs))

        return run

    def get_credential(self, client_class: Any = None, **kwargs: Any) -> Any:
        return get_credential(**kwargs)

    def get_resource_name(self, name: str) -> str:
        return name

    def create_client_from_credential(self, client_class: Any, credential: Any, **kwargs: Any) -> Any:
        return client_class(credential=credential, **kwargs)


class AzureMgmtRecordedTestCase(AzureRecordedTestCase):
    pass


def recorded_by_proxy(fn: Any) -> Any:
    return fn


def set_custom_default_matcher(**kwargs: Any) -> None:
    pass


def add_general_regex_sanitizer(**kwargs: Any) -> None:
    pass


def add_remove_header_sanitizer(**kwargs: Any) -> None:
    pass


def add_oauth_response_sanitizer(**kwargs: Any) -> None:
    pass


def _owning_module() -> str:
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(_SHIM_MODULES) and name != __name__:
            return str(name)
        frame = frame.f_back  # type: ignore[assignment]
    return "unknown"


class AzureMgmtPreparer:
    """A decorator handing the test the resources ``create_resource`` returns, as keyword
    arguments, in the order the real one does: outer preparers first, their results visible to
    the inner ones.  Resource names are fixed at decoration time (module and ordinal), so the
    runner can declare every entity in the emulator's configuration before it starts."""

    _ordinals: ClassVar[dict[str, int]] = {}

    def __init__(self, name_prefix: str = "", random_name_length: int = 24, disable_recording: bool = True,
                 playback_fake_resource: Any = None, client_kwargs: Any = None, random_name_enabled: bool = False,
                 **kwargs: Any) -> None:
        self.name_prefix = name_prefix
        self.random_name_length = random_name_length
        self.random_name_enabled = random_name_enabled
        self.resource_moniker = name_prefix
        self.is_live = True
        self.resource: Any = None
        self.test_class_instance: Any = None
        self.resource_name = ""

    def set_cache(self, *args: Any) -> None:
        pass

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {}

    def remove_resource(self, name: str, **kwargs: Any) -> None:
        pass

    @property
    def moniker(self) -> str:
        return self.resource_moniker

    def _assign_name(self, module: str, stack: list["AzureMgmtPreparer"]) -> None:
        ordinal = AzureMgmtPreparer._ordinals.get(module, 0) + 1
        AzureMgmtPreparer._ordinals[module] = ordinal
        self.resource_name = f"{module.rsplit('.', 1)[-1].removeprefix('test_')}-{ordinal}"

    def __call__(self, fn: Any) -> Any:
        stack = [*getattr(fn, "_conformance_stack", []), self]
        self._assign_name(_owning_module(), stack)
        from servicebus_preparer import register  # the entity registry lives beside the preparers

        register(self, stack)

        parameters = inspect.signature(fn).parameters
        # Only the preparer next to the test trims: an outer one hands everything to the inner ones.
        takes_any = hasattr(fn, "_conformance_stack") or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())

        def prepared(test_instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            self.test_class_instance = test_instance
            merged = dict(kwargs)
            merged.update(self.create_resource(self.resource_name, **kwargs))
            # As the real preparers do: a test gets only the settings it names, unless it takes **kwargs.
            return {k: v for k, v in merged.items() if takes_any or k in parameters}

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(test_instance: Any, *args: Any, **kwargs: Any) -> Any:
                return await fn(test_instance, *args, **prepared(test_instance, kwargs))
            wrapper: Any = run_async
        else:
            @functools.wraps(fn)
            def run(test_instance: Any, *args: Any, **kwargs: Any) -> Any:
                return fn(test_instance, *args, **prepared(test_instance, kwargs))
            wrapper = run
        wrapper._conformance_stack = stack
        return wrapper


class ResourceGroupPreparer(AzureMgmtPreparer):
    def __init__(self, *args: Any, parameter_name: str = RESOURCE_GROUP_PARAM, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parameter_name = parameter_name

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {self.parameter_name: FakeResource(name="rg-conformance", id="rg-conformance"),
                "location": "westus"}


CachedResourceGroupPreparer = functools.partial(ResourceGroupPreparer, use_cache=True)
RandomNameResourceGroupPreparer = ResourceGroupPreparer


class PowerShellPreparer(AzureMgmtPreparer):
    """Hands over settings by name; values come from the environment the runner sets
    (``SERVICEBUS_*``), falling back to the fakes the test file declares."""

    def __init__(self, directory: str, **fake_values: Any) -> None:
        super().__init__()
        self.fake_values = fake_values

    def create_resource(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return {key: os.environ.get(key.upper(), value) for key, value in self.fake_values.items()}

    def __call__(self, fn: Any) -> Any:
        wrapper = super().__call__(fn)
        # The test takes these settings as plain parameters; pytest must not look for fixtures of
        # those names (the real preparer hides them the same way).
        signature = inspect.signature(fn)
        wrapper.__signature__ = signature.replace(
            parameters=[p for name, p in signature.parameters.items() if name not in self.fake_values])
        return wrapper


__all__ = [
    "AzureMgmtPreparer", "AzureMgmtRecordedTestCase", "AzureRecordedTestCase", "AzureTestError",
    "CachedResourceGroupPreparer", "FakeResource", "PowerShellPreparer", "RandomNameResourceGroupPreparer",
    "ReservedResourceNameError", "ResourceGroupPreparer", "add_general_regex_sanitizer", "get_credential",
    "get_region_override", "recorded_by_proxy", "set_custom_default_matcher",
]
