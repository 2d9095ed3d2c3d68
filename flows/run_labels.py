"""What a Prefect flow run is called and tagged with, so a run can be found in the UI.

A stage's flow run is named from its record's :attr:`~flows.stage_records.StageRecord.
run_name_keys` (``train-student k=10 steps=400 exp=steps5 @de8ac3b``): the params values that
tell runs of that stage apart, the DVC experiment (``DVC_EXP_NAME``, which ``dvc exp run``
sets, or the pipeline's own experiment name) and the git commit of the project. Its tags:
``spino``, ``stage:<name>``, ``git:<short commit>``, ``dvc-exp:<name>``: filters in the UI
and ``prefect flow-run ls``.

The name is Prefect's own ``flow_run_name`` (a callable, evaluated when the run starts, so
the console's first line already carries it); tags are set on the run when the stage has
read its config (:func:`tag_flow_run`), and the parent pipeline passes its tags to its
subflows through Prefect's ``tags`` context.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from flows import stage_records

EXP_ENV = "DVC_EXP_NAME"  # set by `dvc exp run` for each stage it runs
EXP_TAG = "dvc-exp:"


def short_commit(root: str | os.PathLike[str]) -> str | None:
    """The checkout's short commit (``de8ac3b``); None outside git or before a commit."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def current_experiment() -> str | None:
    """The DVC experiment this run belongs to: ``DVC_EXP_NAME`` (``dvc exp run``), else a
    ``dvc-exp:<name>`` tag of the Prefect ``tags`` context (a stage run of a pipeline run
    with an ``experiment``)."""
    if os.environ.get(EXP_ENV):
        return os.environ[EXP_ENV]
    from prefect.context import TagsContext

    found = [t for t in TagsContext.get().current_tags if t.startswith(EXP_TAG)]
    return found[0][len(EXP_TAG) :] if found else None


def _value(cfg: Any, dotted: str) -> Any:
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def run_name(
    title: str,
    cfg: Any | None,
    keys: Sequence[str] = (),
    extra: Iterable[str] = (),
    experiment: str | None = None,
) -> str:
    """``<title> <key>=<value>... <extra>... exp=<experiment> @<commit>``."""
    parts = [title]
    if cfg is not None:
        parts += [f"{key.rsplit('.', 1)[-1]}={_value(cfg, key)}" for key in keys]
    parts += list(extra)
    experiment = experiment or current_experiment()
    if experiment:
        parts.append(f"exp={experiment}")
    commit = short_commit(cfg.base_dir) if cfg is not None else None
    if commit:
        parts.append(f"@{commit}")
    return " ".join(parts)


def run_tags(stage: str, cfg: Any, experiment: str | None = None) -> list[str]:
    """``spino``, ``stage:<stage>``, ``git:<commit>``, ``dvc-exp:<experiment>``."""
    tags = ["spino", f"stage:{stage}"]
    if commit := short_commit(cfg.base_dir):
        tags.append(f"git:{commit}")
    if experiment := experiment or current_experiment():
        tags.append(f"{EXP_TAG}{experiment}")
    return tags


def _config_of_this_run() -> Any | None:
    """The config the flow run starting now will read (its ``params``/``overrides``
    parameters); None when unreadable: the flow body then fails with its one-line error."""
    from prefect.runtime import flow_run

    from spino_core.config import load_config

    parameters = flow_run.parameters or {}
    try:
        return load_config(
            parameters.get("params", "params.yaml"), parameters.get("overrides") or []
        )
    except Exception:  # a name never stops a run: its body reports bad params in one line
        return None


def stage_flow_run_name() -> str:
    """``flow_run_name`` of every stage flow: the stage (the flow's name) and its record's
    :attr:`run_name_keys` values, the experiment and the commit."""
    from prefect.runtime import flow_run

    stage = flow_run.flow_name
    keys = stage_records.stage(stage).run_name_keys
    return run_name(stage, _config_of_this_run(), keys)


def pipeline_flow_run_name() -> str:
    """``flow_run_name`` of the parent pipeline flow: its overrides, its stages when not
    all, its experiment, the commit (``pipeline split.k=3 exp=k3 @de8ac3b``)."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters or {}
    extra = list(parameters.get("overrides") or [])
    if parameters.get("stages"):
        extra.append("[" + ",".join(parameters["stages"]) + "]")
    return run_name(
        "pipeline", _config_of_this_run(), extra=extra, experiment=parameters.get("experiment")
    )


def tag_flow_run(stage: str, cfg: Any, experiment: str | None = None) -> None:
    """Add :func:`run_tags` to the current flow run (kept: tags it was created with)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    tags = run_tags(stage, cfg, experiment)
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id).tags or []
        if set(tags) - set(current):
            client.update_flow_run(flow_run.id, tags=list(dict.fromkeys([*current, *tags])))
