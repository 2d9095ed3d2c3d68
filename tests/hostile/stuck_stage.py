"""``spino ARGS`` whose split stage waits on a worker thread stuck in a blocking read.

The worker opens a FIFO nobody writes (as a read from a hung network mount would block);
the stage waits for it inside a thread pool, whose shutdown on the way out joins the stuck
worker, as Prefect's ThreadPoolTaskRunner does with pseudo-label shards. Run by
test_signals_stuck.py as ``python stuck_stage.py FIFO split --params P``.
"""

from __future__ import annotations

import runpy
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import spino_core.stages.split as split_stage

FIFO = sys.argv.pop(1)


def _read_fifo() -> bytes:
    with open(FIFO, "rb") as f:  # blocks: no writer ever opens it
        return f.read()


def _stuck_split(*args: object, **kwargs: object) -> dict:
    with ThreadPoolExecutor(1) as pool:  # __exit__ joins the worker, which never returns
        pool.submit(_read_fifo)
        print("stuck-stage: worker blocked", file=sys.stderr, flush=True)
        time.sleep(3600)
    return {}


split_stage.make_split = _stuck_split
sys.argv = ["spino", *sys.argv[1:]]
runpy.run_module("flows.cli", run_name="__main__")
