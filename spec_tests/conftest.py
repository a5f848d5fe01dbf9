# Fixtures come from the ncspec pytest plugin (conformance/plugin.py): `impl`, `record`.
