"""Stand-in for ``devtools_testutils.sanitizers``: nothing is recorded, so nothing is sanitized."""

from __future__ import annotations

from . import add_general_regex_sanitizer, add_oauth_response_sanitizer, add_remove_header_sanitizer

__all__ = ["add_general_regex_sanitizer", "add_oauth_response_sanitizer", "add_remove_header_sanitizer"]
