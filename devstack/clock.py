"""The instant the demo, the tests and the benchmark give the payment pipeline as "now"
(``PAYMENT_FILES_CLOCK``). Kept apart from :mod:`devstack.demo` so that a process that needs only
this value does not import the Azure SDKs with it (the benchmark measures its children's memory).
"""

# The sample files carry fixed execution dates; the pipeline's clock is set to a business
# morning before them so they stay valid whenever the demo runs.
PAYMENT_CLOCK = "2026-11-20T09:00:00Z"
