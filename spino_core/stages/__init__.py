"""The pipeline's stages as plain functions: one module per stage, each doing the stage's
whole work (reading its inputs, running the library, writing its outputs atomically).

Prefect tasks (``tasks/``) wrap them with names and retries; the benchmarks call them
directly, so what a benchmark measures is what the pipeline runs. Nothing here imports
Prefect, DVC or MLflow. The package imports no stage module itself: a DVC stage's code
dependencies stay the modules that stage runs.
"""
