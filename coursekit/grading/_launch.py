"""Start a sandboxed kernel: join its cgroups, set its limits, then exec the sandbox.

Run by path with ``python -I -S`` (standard library only, nothing from coursekit or the
grader's environment), as the first process of the kernel's process group. Limits set here are
inherited through exec by the sandbox and the kernel; they cannot be raised again from inside
once the kernel runs unprivileged.

    python -I -S _launch.py [--cgroup DIR]... [--limit NAME=VALUE]... -- COMMAND...
"""

import os
import resource
import signal
import sys


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    for flag, value in zip(options[::2], options[1::2]):
        if flag == "--cgroup":  # before exec, so nothing the kernel starts escapes the group
            with open(os.path.join(value, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        elif flag == "--limit":
            name, number = value.split("=")
            limit = int(number)
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (limit, limit))
        else:
            raise SystemExit(f"_launch.py: unknown option {flag}")
    # jupyter_client interrupts a kernel by signalling its whole process group: the wrappers
    # in front of the kernel must survive that; the kernel installs its own SIGINT handler.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
