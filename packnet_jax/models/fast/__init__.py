"""Speed and memory tricks behind named functions: each computes what the plain layer computes.

Every module says in a sentence why it exists; the measurements are in docs/performance.md.
"""
