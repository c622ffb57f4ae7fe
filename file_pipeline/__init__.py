"""Payment-file pipeline (issue 4): FileValidator -> FileAdaptor -> FileCreator, choreographed
over Blob Storage and Service Bus, with compensation and an HTTP status query.

Layers, imports pointing inward:

* ``domain/`` and ``formats/`` - pure rules, readers and writers (no Azure, no clock);
  ``domain/files.py`` is a submitted file's lifecycle record
* ``workfiles.py`` - the claim-checked work files the steps hand each other (pure)
* ``messages.py`` - Service Bus contracts, queue names, Event Grid event data
* ``ports.py`` - storage ports (Protocols), container and table names
* ``service.py`` - the use cases and their Service Bus consumers (no ``azure.*``)
* ``adapters.py`` - Azure Blob and Table Storage implementations of the ports
* ``settings.py`` / ``bootstrap.py`` - app settings; wiring, once per process, on first use
* ``handlers.py`` - ``bp = func.Blueprint()``: the five ``file_pipeline_*`` functions
* ``seed.py`` - ``python -m file_pipeline.seed``: the reference table from ``reference_data/``
"""
