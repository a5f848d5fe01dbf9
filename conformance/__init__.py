"""ncspec conformance: the claim registry, the adapter protocol, the pytest plugin and the CLI."""
