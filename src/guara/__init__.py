"""guara: the control plane of a small platform-as-a-service for private container images."""

__version__ = "0.1.0"

# The seed's Test Connection budget: one wall clock for a whole preflight, every request included.
# Here, so that the registry library and the settings share it without importing each other.
PREFLIGHT_TIMEOUT_S = 8.0
