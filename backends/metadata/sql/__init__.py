"""The SQL every dialect runs: tracking, registry, auth and garbage collection over the
connection protocol of :mod:`connection`, and the compilation of searches. What differs
between databases comes from the dialect (:mod:`backends.metadata.dialects`)."""
