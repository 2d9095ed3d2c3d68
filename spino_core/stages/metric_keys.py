"""Names of the numbers a report's summary holds, in a module that imports nothing.

``flows.tracking`` logs them for every stage and is imported by every stage's flow: it reads
the names here rather than from :mod:`spino_core.stages.outputs`, whose imports (the report
and metrics code) would then become every DVC stage's code dependencies.
"""

#: The pool report's numbers that need no ground truth (None where not known).
POOL_KEYS = (
    "images",
    "images_with_ground_truth",
    "mean_confidence",
    "segments_per_image",
    "instances_per_image",
    "void_fraction",
    "class_mix_distance",
)
