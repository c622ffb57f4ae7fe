"""Fakes of the app's ports for the unit tests and the benchmarks, held to the ports' contract
tests. Never deployed (``.funcignore``)."""
