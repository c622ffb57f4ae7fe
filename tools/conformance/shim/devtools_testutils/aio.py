"""Stand-in for ``devtools_testutils.aio``: nothing is recorded, tests run live."""

from __future__ import annotations

from typing import Any


def recorded_by_proxy_async(fn: Any) -> Any:
    return fn
