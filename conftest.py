# The repository's root conftest: load the ncspec pytest plugin for `pytest spec_tests`.
pytest_plugins = ["conformance.plugin"]
