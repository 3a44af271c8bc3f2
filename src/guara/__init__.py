"""guara: deploy services from private container images."""
