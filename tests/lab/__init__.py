"""Registry lab: real distribution registries on loopback for integration tests."""
