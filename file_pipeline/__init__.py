"""Payment-file pipeline (issue 4): FileValidator -> FileAdaptor -> FileCreator, choreographed
over Blob Storage and Service Bus, with compensation and an HTTP status query.

Layers, imports pointing inward:

* ``domain/`` - pure rules (no Azure, no clock, no file format): IBAN, agents, amounts, dates,
  the transaction rule set (``rules.py``) and the fast paths behind it (``fast/``);
  ``domain/files.py`` is a submitted file's lifecycle record
* ``formats/`` - detection, streaming readers and writers; ``validation.py`` puts readers and
  rules together for one file's content
* ``workfiles.py`` - the claim-checked work files the steps hand each other (pure)
* its messages (the steps' hand-offs, the compensation command, the Event Grid events) are
  contracts: :mod:`contracts.payment_files`
* ``ports.py`` - storage ports (Protocols), container and table names
* ``steps/`` - one module per step (validate, adapt, create, compensate, status) and what they
  share; ``service.py`` composes them on one set of ports (no ``azure.*`` in either)
* ``blob_adapters.py`` / ``table_adapters.py`` - Azure Storage implementations of the ports
* ``bootstrap.py`` - wiring, once per process, on first use (settings: the ``payments`` section
  of :class:`choreography.settings.Settings`)
* ``handlers.py`` - ``bp = func.Blueprint()``: the five ``file_pipeline_*`` functions
* ``seed.py`` - ``python -m file_pipeline.seed``: the reference table from ``reference_data/``
"""
