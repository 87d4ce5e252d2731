"""Proof tests of the durable runtime: worker processes, leases, journal replay, crash recovery."""
