# The ncspec pytest plugin is loaded through its `pytest11` entry point
# (pyproject.toml), so `pytest` here and `pytest --pyargs ncspec.spec_tests`
# anywhere else both get `--adapter`, the Hypothesis profiles and the report.
