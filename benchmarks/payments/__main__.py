"""``python -m benchmarks.payments``."""

import sys

from benchmarks.payments.runner import main

sys.exit(main())
