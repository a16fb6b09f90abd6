"""The runtime: launching ranks, counted communication, failures that never hang, checkpoints."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from coursekit.distributed import runtime
from coursekit.distributed.runtime import launch
from coursekit.distributed.train import Config, _check_same_run, worker

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _probe(scale: float, *, offset: float) -> dict:
    """One of each wrapper on 2 ranks, with the counter read after each."""
    rank, world_size, device = runtime.init()  # already initialised by launch: only reports
    out = {
        "rank": rank,
        "world_size": world_size,
        "device": str(device),
        "env": {k: os.environ.get(k) for k in TORCHRUN_VARIABLES},
        "counts": [],
    }
    t = torch.full((3,), scale * rank + offset, dtype=torch.float64)
    runtime.all_reduce(t)  # 3 float64: 24 bytes each way
    out["sum"] = t.tolist()
    out["counts"].append(runtime.stats.state_dict())
    b = torch.arange(10, dtype=torch.float32) if rank == 0 else torch.zeros(10)
    runtime.broadcast(b, src=0)  # 40 bytes from rank 0 to rank 1
    out["broadcast"] = b.tolist()
    out["counts"].append(runtime.stats.state_dict())
    m = torch.zeros(4, dtype=torch.int64)
    if rank == 0:
        runtime.send(m + 7, dst=1)  # 32 bytes
        out["sender"] = runtime.recv(m, src=None)  # from whoever: rank 1
    else:
        runtime.recv(m, src=0)
        request = runtime.isend(m * 2, dst=0)
        out["sender"] = request.wait()
    out["message"] = m.tolist()
    out["counts"].append(runtime.stats.state_dict())
    return out


@pytest.fixture(scope="module")
def probe():
    return launch(_probe, 2, 10.0, offset=1.0)


def test_launch_gives_each_rank_the_torchrun_environment(probe):
    """Are the results in rank order, with the variables torchrun sets, on the CPU (gloo)?"""
    assert [r["rank"] for r in probe] == [0, 1]
    for rank, result in enumerate(probe):
        assert result["world_size"] == 2 and result["device"] == "cpu"
        env = result["env"]
        assert env["RANK"] == env["LOCAL_RANK"] == str(rank) and env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] and env["MASTER_PORT"]


def test_wrappers_communicate_and_count_payload_bytes(probe):
    """Do the wrappers move the data, and count numel * element_size per call on each side?"""
    r0, r1 = probe
    assert r0["sum"] == r1["sum"] == [12.0] * 3  # (0 * 10 + 1) + (1 * 10 + 1)
    assert r1["broadcast"] == list(range(10))
    assert r0["message"] == [14] * 4 and r1["message"] == [7] * 4
    assert r0["sender"] == 1 and r1["sender"] == 0
    both = {"bytes_sent": 24, "bytes_received": 24, "calls": 1}
    assert r0["counts"][0] == r1["counts"][0] == both
    assert r0["counts"][1] == {"bytes_sent": 64, "bytes_received": 24, "calls": 2}
    assert r1["counts"][1] == {"bytes_sent": 24, "bytes_received": 64, "calls": 2}
    assert r0["counts"][2] == {"bytes_sent": 96, "bytes_received": 56, "calls": 4}
    assert r1["counts"][2] == {"bytes_sent": 56, "bytes_received": 96, "calls": 4}


def _rank() -> int:
    return dist.get_rank()


def test_launch_leaves_the_callers_signal_handlers_as_they_were():
    """torchrun's launcher installs SIGTERM/SIGINT handlers in the caller: are they put back?
    (Left in a notebook's kernel, they raised a SignalException at every kernel shutdown.)"""
    import signal

    def mark(signum, frame):  # a handler of our own, to recognise afterwards
        pass

    # Both marked, whatever the caller had (a shell's background job starts with SIGINT ignored).
    before = {s: signal.signal(s, mark) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert launch(_rank, 1) == [0]
        assert signal.getsignal(signal.SIGTERM) is mark
        assert signal.getsignal(signal.SIGINT) is mark
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _fail_on_rank_1() -> None:
    if dist.get_rank() == 1:
        raise ValueError("no data on this rank")
    dist.barrier()


def test_launch_names_the_failed_rank_and_its_error():
    """Is the rank that raised named first, before the peer that lost its connection?"""
    with pytest.raises(RuntimeError) as info:
        launch(_fail_on_rank_1, 2, timeout=20.0)
    lines = str(info.value).splitlines()
    assert lines[1].strip() == "rank 1 failed: ValueError: no data on this rank"
    assert lines[2].strip().startswith("rank 0 failed: RuntimeError")


def _wait_for_silent_peer() -> None:
    if dist.get_rank() == 1:
        runtime.recv(torch.zeros(1), src=0, timeout=1.0)  # rank 0 never sends
    dist.barrier()


def test_receive_from_a_silent_peer_times_out_naming_it():
    """Does a receive that nobody answers fail after its timeout, naming the peer?"""
    message = r"rank 1: receive from rank 0 did not complete within 1 s"
    with pytest.raises(RuntimeError, match=message):
        launch(_wait_for_silent_peer, 2, timeout=20.0)


@pytest.mark.parametrize("algorithm", ["allreduce", "easgd"])
def test_a_killed_worker_makes_every_other_rank_fail_not_hang(algorithm):
    """With rank 1 gone at step 5, does every survivor stop with an error that says why?

    The ranks are plain processes with torchrun's variables set, so each survivor's own
    error is seen (a launcher would tear the survivors down itself). The subprocess timeout
    is a hang guard, not a measure of speed.
    """
    world_size, port = 3, runtime._free_port()
    command = [
        sys.executable,
        "-m",
        "coursekit.distributed.train",
        "--algorithm",
        algorithm,
        "--tau",
        "1",
        "--steps",
        "40",
        "--eval-every",
        "10",
        "--sizes",
        "64",
        "10",
        "--crash-at",
        "1",
        "5",
        "--timeout",
        "5",
    ]
    processes = []
    for rank in range(world_size):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            MASTER_ADDR="localhost",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        processes.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert processes[1].returncode == 1  # os._exit(1): the "killed" rank says nothing
    for rank in (0, 2):
        stderr = outcomes[rank][1]
        assert processes[rank].returncode != 0
        assert f"rank {rank}: all_reduce of" in stderr and "failed (a peer died" in stderr


def _final_state(directory: Path, world_size: int, steps: int) -> list[dict]:
    return [
        torch.load(directory / f"rank{r}_step{steps:08d}.pt", weights_only=True)
        for r in range(world_size)
    ]


@pytest.mark.parametrize("algorithm, checkpoint_every", [("allreduce", 4), ("easgd", 2)])
def test_resuming_after_a_crash_ends_where_an_uninterrupted_run_ends(
    tmp_path, algorithm, checkpoint_every
):
    """Killed after the checkpoint of step 12, resumed: are the final parameters identical?

    Checkpoints every 4 steps (easgd: 2 rounds of tau = 2), records every 5. Rank 1 dies
    before saving step 16, rank 0 may have saved it: the ranks must agree to restart from
    step 12, in the middle of a record's window of losses.
    """
    config = Config(
        algorithm=algorithm,
        sizes=(64, 16, 10),
        tau=2,
        steps=24,
        batch_size=16,
        momentum=0.5,
        eval_every=5,
        dtype="float64",
        timeout=20.0,
        checkpoint_every=checkpoint_every,
    )
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    launch(worker, 2, dataclasses.replace(config, checkpoint_dir=str(whole)))
    with pytest.raises(RuntimeError, match="rank 1 failed: exited with code 1"):
        launch(worker, 2, dataclasses.replace(config, checkpoint_dir=str(broken), crash_at=(1, 16)))
    assert (broken / "rank1_step00000012.pt").exists()
    assert not (broken / f"rank1_step{config.steps:08d}.pt").exists()
    resumed = launch(
        worker, 2, dataclasses.replace(config, checkpoint_dir=str(broken), resume=True)
    )
    for a, b, history in zip(_final_state(whole, 2, 24), _final_state(broken, 2, 24), resumed):
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key])
        assert a["algorithm"].keys() == b["algorithm"].keys()
        for key in a["algorithm"]:
            assert torch.equal(a["algorithm"][key], b["algorithm"][key])
        for key in ("step", "train_loss", "test_error", "bytes_sent", "bytes_received"):
            # Exactly equal; NaN (the start's train loss) counts as equal to NaN.
            for other in (b["history"][key], history[key]):
                torch.testing.assert_close(
                    torch.tensor(a["history"][key], dtype=torch.float64),
                    torch.tensor(other, dtype=torch.float64),
                    rtol=0,
                    atol=0,
                    equal_nan=True,
                )


def test_checkpoints_are_written_atomically_and_the_latest_two_kept(tmp_path):
    """Without a process group: does each save replace a file whole and drop the old ones?"""
    assert runtime.load_checkpoint(tmp_path / "none") is None
    for step in (4, 8, 12):
        runtime.save_checkpoint(tmp_path, {"w": torch.full((2,), float(step))}, step=step)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rank0_step00000008.pt",
        "rank0_step00000012.pt",
    ]
    state = runtime.load_checkpoint(tmp_path)
    assert state["step"] == 12 and torch.equal(state["w"], torch.full((2,), 12.0))


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="Invalid world_size: 0"):
        launch(_probe, 0)
    with pytest.raises(ValueError, match="Invalid timeout: 0"):
        launch(_probe, 2, timeout=0)
    with pytest.raises(ValueError, match="Invalid algorithm: 'adam'"):
        worker(Config(algorithm="adam"))


def test_a_checkpoint_resumes_only_the_same_run():
    saved = dataclasses.asdict(Config(sizes=[64, 10]))  # a tuple may come back as a list
    _check_same_run(Config(sizes=(64, 10), steps=900, resume=True), saved)
    with pytest.raises(ValueError, match="lr: 0.05 saved, 0.1 now; seed: 0 saved, 1 now"):
        _check_same_run(Config(sizes=(64, 10), lr=0.1, seed=1), saved)
