"""Pure domain layer of the payment-file pipeline (no Azure, no network, no wall clock).

* :mod:`.reason_codes` - ISO 20022 ExternalStatusReason codes, NACHA error mapping
* :mod:`.model` - ``Transaction``, ``FileHeader``, ``PaymentBlock``, ``Finding``, ``FileRejected``
* :mod:`.reference` - frozen ``ReferenceData`` built from Azure-Table-shaped rows (+ shipped seed)
* :mod:`.rules` - transaction and file rules, each returning reason code + description
* :mod:`.validator` - ``FileValidation``: rules + client policy over a reader's stream
* :mod:`.daily` - daily limits per client, currency and execution date, across files
* :mod:`.names` - checks for externally supplied blob names

Nothing here imports a file format: :mod:`file_pipeline.validation` puts the readers
(:mod:`file_pipeline.formats`) and these rules together.
"""
