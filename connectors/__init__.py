"""Built-in connectors; each is registered in the `xcap_gateway.connectors` entry-point group."""
