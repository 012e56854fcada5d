"""Run the real worker command line and SIGKILL this process at a chosen step.

``python -m tests.worker.kill_at STEP[@N] -- ARGS...``: the N-th time (default
the first) the worker reaches ``STEP`` (see ``worker.pacing.STEPS``), the process
kills itself with SIGKILL — no cleanup, no flush, exactly like a power cut of the
process. If the step is never reached the worker finishes normally.
"""

from __future__ import annotations

import os
import signal
import sys

from worker.__main__ import Parts, main


def hook_for(spec: str):  # type: ignore[no-untyped-def]
    step, _, nth = spec.partition("@")
    target = int(nth or 1)
    seen = 0

    def hook(name: str) -> None:
        nonlocal seen
        if name == step:
            seen += 1
            if seen == target:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


if __name__ == "__main__":
    spec, args = sys.argv[1], sys.argv[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    sys.exit(main(args, parts=Parts(hook=hook_for(spec))))
