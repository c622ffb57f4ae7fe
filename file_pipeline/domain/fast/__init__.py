"""Fast paths behind the rules: what lets a reader hand over runs of clean entries without
asking :meth:`~file_pipeline.domain.rules.TransactionRules.check` about each one. ``check`` stays
the reference; the equivalence tests hold every fast path to its verdicts."""
