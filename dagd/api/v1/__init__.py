"""Generated gRPC code for the dagd.api.v1 package (see scripts/gen_protos.py)."""
