"""The names of a pseudo-label folder's files (``paths.pseudo``), and nothing else.

Readers of the folder (report, train-student, evaluate, the gallery) import these names
from here: importing them from ``generate`` pulled the fusion and inference code into
those stages' DVC deps, so editing shard threading reran the student.
"""

FORMAT = "spino-pseudo/1"
CONFIG_FILE = "config.json"  # the labels' fingerprint (guard)
PANOPTIC_DIR = "panoptic"
SEGMENTS_DIR = "segments"
PANOPTIC_JSON = "panoptic.json"
MANIFEST = "manifest.parquet"  # written last: its presence marks a finished run
