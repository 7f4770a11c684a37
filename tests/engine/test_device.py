"""The thread count foveal chooses: the cores this process may use (affinity, a cgroup quota), less those
other processes keep busy when it starts; and the permissions of the files it writes."""

import os
import stat
import subprocess
import sys
import time

import pytest
import torch

from foveal.engine import cores, device
from foveal.engine.checkpoint import save_weights
from foveal.files import write_text

measure_busy_cores = cores.busy_cores_between  # conftest's quiet_machine replaces it in every test


@pytest.mark.parametrize("version, files, cpus", [
    ("v2", {"cpu.max": "150000 100000\n"}, 1.5),
    ("v2", {"cpu.max": "max 100000\n"}, None),
    ("v1", {"cpu/docker/abc/cpu.cfs_quota_us": "200000\n", "cpu/docker/abc/cpu.cfs_period_us": "100000\n"}, 2.0),
    ("v1", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("v1", {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 0.5),
])
def test_a_cgroup_quota_is_read_in_either_version(tmp_path, version, files, cpus):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/\n" if version == "v2" else "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cores.cgroup_cpu_limit(proc, root) == cpus


def test_a_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: 1.5)
    assert cores.available_cores() == 1
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: None)
    assert cores.available_cores() == 4


@pytest.mark.parametrize("count, busy, threads", [(2, 0.2, 2), (2, 0.7, 1), (2, 2.0, 1), (8, 3.2, 5), (8, 9.0, 1)])
def test_busy_cores_are_left_to_their_processes(monkeypatch, count, busy, threads):
    monkeypatch.setattr(cores, "available_cores", lambda: count)
    monkeypatch.setattr(cores, "cores_busy_elsewhere", lambda seconds=0.0: busy)
    threads_before = torch.get_num_threads()
    chosen, note = device.default_threads()
    assert chosen == threads
    assert (note != "") == (threads < count)
    if note:
        assert f"using {busy:.1f} of {count} cores; {threads} thread" in note
    lines = []
    assert device.configure_cpu(0, log=lines.append) == threads == torch.get_num_threads()
    assert lines == ([note] if note else [])
    # processes of one run split the cores between them, and a given count is taken as it is
    assert device.default_threads(processes_per_machine=2) == (count // 2, "")
    said = len(lines)
    assert device.configure_cpu(3, log=lines.append) == 3 and len(lines) == said  # nothing to say
    torch.set_num_threads(threads_before)


def test_the_load_is_measured_since_foveal_was_imported_when_that_was_recent(monkeypatch):
    windows = []
    monkeypatch.setattr(cores, "busy_cores_between", lambda first, last: windows.append((first, last)) or 0.0)
    now = cores.cpu_sample()
    monkeypatch.setattr(cores, "STARTED", now._replace(when=now.when - 3))  # imported 3 s ago, as a CLI run is
    started = time.perf_counter()
    cores.cores_busy_elsewhere()
    assert windows[-1][0] is cores.STARTED and time.perf_counter() - started < 0.1  # no sleep: the import's window
    monkeypatch.setattr(cores, "STARTED", now._replace(when=now.when - 600))  # a Python session's long-ago import
    started = time.perf_counter()
    cores.cores_busy_elsewhere(0.2)
    assert windows[-1][0] is not cores.STARTED and time.perf_counter() - started >= 0.2  # a fresh window


def test_another_process_spinning_counts_as_busy_and_our_own_threads_do_not():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        first = cores.cpu_sample()
        time.sleep(0.5)
        busy = measure_busy_cores(first, cores.cpu_sample())
    finally:
        spinner.kill()
    assert busy >= 0.6  # one core (more if something else runs too)


def test_files_get_the_permissions_open_would_give(tmp_path, monkeypatch):
    monkeypatch.setattr("foveal.files.UMASK", 0o022)
    old = os.umask(0o022)
    try:
        save_weights(tmp_path / "best.safetensors", {"w": torch.ones(2)}, {"task": "classify"})
        write_text(tmp_path / "config.yaml", "a: 1\n")
        for name in ("best.safetensors", "config.yaml"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
        (tmp_path / "config.yaml").chmod(0o600)  # an existing file keeps its own, as with open()
        write_text(tmp_path / "config.yaml", "a: 2\n")
        assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_long_run_follows_the_free_cores(monkeypatch):
    monkeypatch.setattr(cores, "available_cores", lambda: 4)
    busy = iter([2.6, 2.4, 0.3, 0.0])  # a job starts beside the run, then ends
    monkeypatch.setattr(cores, "busy_cores_between", lambda first, last: next(busy))
    lines, threads = [], torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        watch = device.ThreadWatch(4, True, lines.append, every=0.0)
        seen = []
        for step in range(4):
            watch.check(f"step {step}")
            seen.append(torch.get_num_threads())
        assert seen == [1, 2, 4, 4]  # never above the count chosen at the start
        assert lines[0] == "busy machine: other processes are using 2.6 cores; 1 thread from step 0"
        assert lines[2] == "machine free again: other processes are using 0.3 cores; 4 threads from step 2"
        assert len(lines) == 3
        torch.set_num_threads(2)
        device.ThreadWatch(2, False, lines.append, every=0.0).check("step 5")  # a count the user gave: kept
        assert torch.get_num_threads() == 2 and len(lines) == 3
    finally:
        torch.set_num_threads(threads)


def test_predict_follows_the_free_cores_frame_by_frame(monkeypatch, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    import foveal

    run = foveal.train("classify", data="digits", model="mlp", imgsz=8, epochs=1, workers=0, amp="off",
                       verbose=False, project=tmp_path)
    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(tmp_path / f"{k}.png")
    monkeypatch.setattr(cores, "available_cores", lambda: 2)
    monkeypatch.setattr(device.ThreadWatch, "EVERY", 0.0)
    busy = iter([0.1, 1.7, 0.1])  # quiet at the start; a job takes a core at the first image, then ends
    monkeypatch.setattr(cores, "busy_cores_between", lambda first, last: next(busy, 0.0))
    threads, seen = torch.get_num_threads(), []
    real_infer = foveal.tasks.classify.predict.ClassifyPredictor.infer
    monkeypatch.setattr(foveal.tasks.classify.predict.ClassifyPredictor, "infer",
                        lambda self, pixels: seen.append(torch.get_num_threads()) or real_infer(self, pixels))
    try:
        foveal.predict(weights=run.best, source=str(tmp_path / "*.png"), verbose=True)
        assert seen == [1, 2, 2]
        out = capsys.readouterr().out
        assert "busy machine: other processes are using 1.7 cores; 1 thread from" in out
        assert "machine free again: other processes are using 0.1 cores; 2 threads from" in out
        seen.clear()
        foveal.predict(weights=run.best, source=str(tmp_path / "*.png"), threads=2)  # a count given: kept
        assert seen == [2, 2, 2]
    finally:
        torch.set_num_threads(threads)
