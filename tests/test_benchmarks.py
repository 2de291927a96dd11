"""The GPU suite's CPU smoke test: every part of benchmarks/gpu_suite.py runs at 1/8 of the paper's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_gpu_suite_runs_at_one_eighth_scale_on_a_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--device", "cpu", "--scale", "0.125", "--iters", "1", "--warmup", "1", "--loader-iters", "2"]
    args += ["--methods", "source_only", "advent", "--out-dir", str(tmp_path)]
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), *args], check=True, env=env, cwd=ROOT)
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["source_only", "advent"]
    for m in report["methods"]:
        assert set(m["modes"]) == {"fp32", "bf16", "bf16_channels_last", "bf16_channels_last_compile"}
        assert all(v["it_per_s"] > 0 for v in m["modes"].values())
        assert m["flops_per_step"] > 0 and 0 < m["mfu"]
    advent, source_only = (m["flops_per_step"] for m in report["methods"][::-1])
    assert advent > source_only  # AdvEnt's step also runs the target image and two discriminators
    assert report["loader"]["iters"] == 2 and "keeps_up" in report["loader"]
    assert set(report["goals"]) == {"bf16_cl_speedup", "mfu", "advent_120k_hours", "peak_mem_gib"}
    assert report["goals"]["peak_mem_gib"]["met"] is None  # no CUDA memory to measure on a CPU
    assert "| goal | target | measured | met |" in (tmp_path / "gpu_suite.md").read_text()


def test_the_readme_quotes_the_data_loading_benchmark():
    report = json.loads((ROOT / "benchmarks" / "data_loading.json").read_text())
    gta5, cityscapes = (report["datasets"][k] for k in ("gta5", "cityscapes"))
    readme = " ".join((ROOT / "README.md").read_text().split())
    expected = (
        f"decodes, resizes, flips and normalises {gta5['images_per_s_per_core']:.0f} GTA5-sized and "
        f"{cityscapes['images_per_s_per_core']:.0f} Cityscapes-sized PNGs per second"
    )
    assert expected in readme
    assert f"needs {report['workers_for_step']} loader workers" in readme


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_bafft_step_benchmark_times_its_parts_at_one_eighth_scale(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bafft.json"
    args = ["--device", "cpu", "--scale", "0.125", "--iters", "1", "--warmup", "0", "--out", str(out)]
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bafft_step.py"), *args], check=True, env=env, cwd=ROOT)
    rec = json.loads(out.read_text())
    parts = ("connected components", "bank push", "bank distance", "masked pooling")
    assert set(rec["s_per_step_parts"]) == set(parts)
    assert all(0 < rec["share_of_step"][p] < 1 for p in parts)  # banks full: every part is called
    assert rec["source_size"] == [90, 160] and rec["target_size"] == [64, 128]
