"""ReadNext's shared package: configuration, record schemas, model math and clients used by every layer."""
