import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows.cli import STAGE_NAMES, main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["split", "-S", "split.k=0"], "split.k: must be >= 1"),
        (["synth", "-S", "synth.colour=red"], "synth.colour: unknown key"),
        (["split", "-S", "split.k"], "expected key=value"),
    ],
)
def test_bad_params_one_line_exit_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*args, "--params", str(REPO / "params.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and err.startswith("spino: error: ")


def test_missing_params_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: params file not found" in capsys.readouterr().err


def test_console_script_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in (*STAGE_NAMES, "pipeline", "evaluate-panoptic"):
        assert name in out


def test_evaluate_panoptic_cli_is_light_and_writes_json(tmp_path: Path) -> None:
    import numpy as np

    from spino_core.data.coco_panoptic import (
        segments_info_from_ids,
        write_panoptic_json,
        write_panoptic_png,
    )

    # 4x4: a road segment (labelId 7) and a car (labelId 26); the prediction shrinks the car
    # by 2 pixels -> car IoU 4/6 (matched), road IoU 10/12: PQ = (4/6 + 10/12) / 2.
    gt = np.array([[1, 1, 1, 1], [1, 2, 2, 1], [1, 2, 2, 1], [1, 2, 2, 1]], dtype=np.int32)
    pred = gt.copy()
    pred[3, 1:3] = 1
    cats = {1: 7, 2: 26}
    for name, ids in (("gt", gt), ("pred", pred)):
        write_panoptic_png(tmp_path / name / "a.png", ids)
        ann = {
            "image_id": "a",
            "file_name": "a.png",
            "segments_info": segments_info_from_ids(ids, cats),
        }
        write_panoptic_json(tmp_path / f"{name}.json", [{"id": "a", "file_name": "a.png"}], [ann])
    out = tmp_path / "m.json"
    code = (
        "import sys; from flows.cli import main; "
        f"rc = main(['evaluate-panoptic', '--gt-json', r'{tmp_path / 'gt.json'}', "
        f"'--gt-dir', r'{tmp_path / 'gt'}', '--pred-json', r'{tmp_path / 'pred.json'}', "
        f"'--pred-dir', r'{tmp_path / 'pred'}', '--out', r'{out}', '--workers', '1']); "
        "heavy = [m for m in ('torch', 'prefect', 'mlflow', 'timm') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    import json

    metrics = json.loads(out.read_text())
    car_iou, road_iou = 4 / 6, 10 / 12
    assert metrics["Things"]["pq"] == pytest.approx(car_iou)
    assert metrics["Stuff"]["pq"] == pytest.approx(road_iou)
    assert metrics["All"]["pq"] == pytest.approx((car_iou + road_iou) / 2)


def test_evaluate_panoptic_cli_bad_input_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "evaluate-panoptic",
            "--gt-json",
            str(tmp_path / "missing.json"),
            "--gt-dir",
            str(tmp_path),
            "--pred-json",
            str(tmp_path / "missing.json"),
            "--pred-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.json" in err and err.count("\n") == 1


def test_prefect_yaml_entrypoint_is_the_pipeline_flow() -> None:
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    assert deployment["schedules"][0]["cron"]
    flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
    assert flow.name == "spino-pipeline"
    assert set(deployment["parameters"]) <= set(flow.parameters.properties)


def test_stage_command_runs_the_stage_records_flow() -> None:
    import importlib

    from flows.cli import _stage_flow

    for name in STAGE_NAMES:
        module = importlib.import_module(f"flows.{name.replace('-', '_')}")
        assert _stage_flow(name) is getattr(module, f"{name.replace('-', '_')}_flow")


def test_light_stages_import_only_what_they_use() -> None:
    """A stage command imports its own flow only; MLflow, timm, DVC, matplotlib when used.

    (``report`` still gets torch through ``spino_core.pseudo``'s package imports.)
    """
    code = (
        "import sys; from flows.cli import _stage_flow; "
        "[_stage_flow(s) for s in ('synth', 'split', 'report')]; "
        "print([m for m in ('torch', 'timm', 'torchvision', 'mlflow', 'dvc', 'matplotlib') "
        "if m in sys.modules])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[-2] == "['torch']"
    code = code.replace("'split', 'report'", "'split'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.stdout.split("\n")[-2] == "[]", res.stderr


def test_an_interrupted_in_process_call_leaves_the_signal_handlers_as_it_found_them() -> None:
    """main() called in-process (tests, the serve loop) and interrupted returns 130, and must
    not leave SIGINT ignored: processes started later would inherit the ignored SIGINT (a
    later test's Ctrl-C never arrived). A subprocess: the interrupt path may os._exit."""
    code = (
        "import signal, flows.cli as c\n"
        "def boom(*a, **k):\n"
        "    raise KeyboardInterrupt\n"
        "c._run = boom\n"
        "before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))\n"
        "rc = c.main(['synth', '--params', 'params.yaml'])\n"
        "after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))\n"
        "print('RC', rc, 'SAME', before == after, after)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert "RC 130 SAME True" in res.stdout, res.stdout + res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == "spino: interrupted (SIGINT)"


def test_each_flow_command_waits_for_the_api_just_before_its_first_call(
    tmp_path: Path,
    tiny_params: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A temporary server boots while the command imports; the command's own work (the
    stage's flow, serve, with-prefect's child) starts only once it answers."""
    import flows.cli
    import flows.prefect_api
    import flows.serve

    events: list[str] = []

    class Server:
        url = "http://127.0.0.1:1/api"

        def wait_ready(self) -> None:
            events.append("ready")

    @contextlib.contextmanager
    def api() -> Iterator[Server]:
        events.append("boot")
        yield Server()

    monkeypatch.setattr(flows.prefect_api, "prefect_api", api)
    monkeypatch.setattr(flows.serve, "serve", lambda *args: events.append("serve"))
    monkeypatch.setattr(flows.cli, "_stage_flow", lambda name: lambda **kw: events.append(name))
    params = str(tiny_params(tmp_path, mlflow={"enabled": False}))

    assert main(["with-prefect", sys.executable, "-c", "print('child ran')"]) == 0
    out = capfd.readouterr().out
    assert out.index("Prefect API for this run: http://127.0.0.1:1/api") < out.index("child ran")
    assert main(["serve", "--params", params]) == 0
    assert main(["synth", "--params", params]) == 0
    assert events == ["boot", "ready", "boot", "ready", "serve", "boot", "ready", "synth"]
    assert main(["with-prefect"]) == 2  # refused before any server boots
    assert events[-1] == "synth"


def test_evaluate_panoptic_cli_names_classes_by_the_files_categories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 6-category export is named by its own categories, not Cityscapes' ids 1-6."""
    import numpy as np

    from spino_core.data.coco_panoptic import (
        segments_info_from_ids,
        write_panoptic_json,
        write_panoptic_png,
    )

    names = ["ground", "structure", "vegetation", "sky", "human", "vehicle"]
    cats = [{"id": i, "name": n, "isthing": int(i > 4)} for i, n in enumerate(names, start=1)]
    ids = np.array([[1, 1, 2, 2], [3, 3, 4, 4], [5, 5, 6, 6]], dtype=np.int32)
    for name in ("gt", "pred"):
        write_panoptic_png(tmp_path / name / "a.png", ids)
        segments = segments_info_from_ids(ids, {i: i for i in range(1, 7)})
        ann = {"image_id": "a", "file_name": "a.png", "segments_info": segments}
        write_panoptic_json(tmp_path / f"{name}.json", [{"id": "a"}], [ann], cats)
    args = ["--gt-json", tmp_path / "gt.json", "--gt-dir", tmp_path / "gt"]
    args += ["--pred-json", tmp_path / "pred.json", "--pred-dir", tmp_path / "pred"]
    assert main(["evaluate-panoptic", *map(str, args), "--workers", "1"]) == 0
    table = capsys.readouterr().out
    rows = [line.split()[0] for line in table.splitlines()[-6:]]
    assert rows == names
    assert "ego" not in table and "rectification" not in table
