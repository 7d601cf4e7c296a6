"""The toolkit version recorded in every output (cache.h5, results.json, the report)."""

TOOLKIT_VERSION = "0.1.0"
