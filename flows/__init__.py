"""Prefect flows, one per pipeline stage, and the ``spino`` command (:mod:`flows.cli`)."""
