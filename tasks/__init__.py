"""Prefect tasks: the units of work the stage flows (:mod:`flows`) run and retry."""
