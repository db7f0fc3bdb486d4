"""The HTTP API: thin routes over service/core, one module per concern; errors.py turns what the
operations raise into responses."""
