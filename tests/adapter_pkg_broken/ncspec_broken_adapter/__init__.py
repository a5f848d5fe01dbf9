"""Adapters registered wrongly (see pyproject.toml): a missing attribute, a missing module,
and capabilities given as a list."""


class ListCapabilities:
    name = "broken_caps"
    capabilities = ["simsiam"]

    def build(self, method, encoder, embed_dim, **options):
        raise AssertionError("never reached: the adapter is rejected when loaded")


list_capabilities = ListCapabilities()
