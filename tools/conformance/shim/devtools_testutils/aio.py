"""Stand-in for ``devtools_testutils.aio``: nothing is recorded, tests run live."""

from __future__ import annotations

from typing import Any

import pytest


def recorded_by_proxy_async(fn: Any) -> Any:
    # Microsoft's decorator is what runs these coroutine tests in its CI (they carry no asyncio
    # marker of their own); the conformance plugin runs tests with the marker on an event loop.
    return pytest.mark.asyncio(fn)
