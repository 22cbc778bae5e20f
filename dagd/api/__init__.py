"""The versioned gRPC API (generated code lives in v1/)."""
