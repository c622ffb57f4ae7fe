"""The operator's CLI, ``python -m ops``: see the choreography (``trace``, ``map``). Not deployed."""
