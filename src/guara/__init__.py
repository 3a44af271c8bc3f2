"""guara: the control plane of a small platform-as-a-service for private container images."""

__version__ = "0.1.0"
