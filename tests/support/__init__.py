"""Helpers the tests share: paths and reference constants, worker processes, imports,
loaded API data, chunks, private servers and the container entry point. Fixtures live in
``tests/conftest.py`` only."""
