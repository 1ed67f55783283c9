"""`train --profile`: where the time and the memory of a few training steps go.

Writes into <run>/profile/: trace-rank<R>.json, a torch profiler trace of PROFILE_STEPS steps after one step of
warmup (open it in https://ui.perfetto.dev or chrome://tracing: every operator and CUDA kernel on a timeline),
and on CUDA memory-rank<R>.pickle, a snapshot of every allocation with its stack (drag it onto
https://pytorch.org/memory_viz). Training goes on after those steps, unprofiled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

WARMUP_STEPS = 1  # the first step allocates and, with compile, compiles: not typical
PROFILE_STEPS = 3


class StepProfiler:
    """Call step() after every optimizer step; the trace and the snapshot are written once the steps are done."""

    def __init__(self, out_dir: Path, rank: int, device: torch.device) -> None:
        self.out_dir, self.rank, self.cuda = out_dir, rank, device.type == "cuda"
        self.steps = 0
        out_dir.mkdir(parents=True, exist_ok=True)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = profile(activities=activities, record_shapes=True, profile_memory=True,
                            schedule=schedule(wait=0, warmup=WARMUP_STEPS, active=PROFILE_STEPS, repeat=1),
                            on_trace_ready=self._write_trace)
        if self.cuda:
            torch.cuda.memory._record_memory_history(max_entries=100_000)
        self.prof.start()

    def _write_trace(self, prof: profile) -> None:
        prof.export_chrome_trace(str(self.out_dir / f"trace-rank{self.rank}.json"))

    def step(self) -> None:
        if self.prof is None:
            return
        self.steps += 1
        self.prof.step()
        if self.steps == WARMUP_STEPS + PROFILE_STEPS:
            self.stop()

    def stop(self) -> None:
        """End profiling (also when training ends sooner): write what was recorded."""
        if self.prof is None:
            return
        self.prof.stop()
        self.prof = None
        if self.cuda:
            torch.cuda.memory._dump_snapshot(str(self.out_dir / f"memory-rank{self.rank}.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
