"""A student's kernel, run where it can harm nothing: bubblewrap, an unprivileged user, limits.

`SandboxedKernelManager` is a jupyter_client kernel manager, so nbclient and nbgrader execute a
submission through it unchanged. Its kernel sees:

* read-only: the system's /usr and libraries, the kernel's Python and packages, and the files
  of the assignment (each bound alone into the kernel's home);
* writable: a private /tmp and home, tmpfs of bounded size, and one folder holding the kernel's
  connection file and Unix sockets (``/dev/shm``, so what it writes there counts as memory);
* nothing else: not the course's solutions, the hidden tests, the gradebook or any other
  student's files, and no network (its own loopback only; the kernel talks over Unix sockets).

Why these mechanisms (facts measured on the CI machine kind, see the README):

* bwrap (Debian's ``bubblewrap``) builds the namespaces, but it is a boundary only when started
  by an unprivileged user: started by root, its user namespace maps to real root. So a grader
  running as root first drops to the system user ``coursekit-sandbox`` with ``setpriv``. That
  user cannot run a Python installed in root's home, so the kernel then runs from a venv built
  with the system's python3 (`prepare_kernel_python`).
* Memory is limited per process with RLIMIT_DATA (not RLIMIT_AS: CUDA reserves huge address
  ranges it never touches): an allocation past it fails inside the kernel, which survives and
  reports a MemoryError-like error in the cell. When the grader is root and the cgroup v1 memory
  and pids controllers exist, the kernel and all its children also share one memory cgroup,
  `_PAGE_CACHE_ROOM` above the data limit: a single hog then meets RLIMIT_DATA first, instead of
  thrashing the cgroup's page cache (the libraries' code pages) until a cell timeout, and only
  many processes together are OOM-killed. Processes: the pids controller, else RLIMIT_NPROC for
  the dedicated user.
* Modules a submission must not delegate to (`blocked`, from the hidden tests) are replaced inside the sandbox by
  stubs that raise: torch's and coursekit's own optimizers are not there to call.

Time limits per cell and per notebook are kept by the executor (`coursekit.grading.execute`).
"""

from __future__ import annotations

import ast
import functools
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Float, Integer, List, Unicode

SANDBOX_USER = "coursekit-sandbox"
HOME = "/home/student"
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_LAUNCH = Path(__file__).with_name("_launch.py")

# What each kind of hidden test forbids a submission to call while it is graded. "torch.optim.*"
# is every algorithm module of torch.optim: the base class, schedulers and swa_utils stay.
_TORCH_OPTIM_KEEP = {
    "__init__.py",
    "optimizer.py",
    "lr_scheduler.py",
    "swa_utils.py",
    "_stateless.py",
}


# Room in the memory cgroup above the per-process data limit, for the file pages of the libraries
# a kernel maps (torch's alone are hundreds of MB) and for the kernel's own children.
_PAGE_CACHE_ROOM = 1 * 2**30


class SandboxUnavailable(RuntimeError):
    """The machine cannot sandbox a kernel; the message says what to install or run."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one kernel."""

    memory_bytes: int = 4 * 2**30
    max_processes: int = 512  # threads count too: a torch kernel uses about a dozen
    tmp_bytes: int = 256 * 2**20  # each of /tmp and the home folder
    file_bytes: int = 256 * 2**20


def is_root() -> bool:
    return os.geteuid() == 0


def check_available() -> None:
    """Raise SandboxUnavailable unless bwrap is installed (and setpriv, for root)."""
    if sys.platform != "linux":
        raise SandboxUnavailable("sandboxed grading needs Linux (bubblewrap)")
    missing = [tool for tool in ("bwrap", "setpriv") if shutil.which(tool) is None]
    if "bwrap" in missing or (is_root() and missing):
        raise SandboxUnavailable(
            f"{' and '.join(missing)} not found: install them (Debian: apt-get install "
            "bubblewrap util-linux) to grade submissions in a sandbox"
        )


def _sandbox_ids() -> tuple[int, int] | None:
    """(uid, gid) the kernel runs as: the dedicated user under root, else the caller's own."""
    if not is_root():
        return None
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        raise SandboxUnavailable(
            f"no user {SANDBOX_USER!r}: run `coursekit sandbox-setup` once as root"
        ) from None
    return entry.pw_uid, entry.pw_gid


def default_kernel_python(course_root: Path) -> str:
    """The Python that runs sandboxed kernels: the grader's own, or under root a separate venv.

    ``COURSEKIT_KERNEL_PYTHON`` overrides it (tests grade temporary courses with the main one's).
    """
    if os.environ.get("COURSEKIT_KERNEL_PYTHON"):
        return os.environ["COURSEKIT_KERNEL_PYTHON"]
    if is_root():
        return str(course_root / ".cache" / "grading-kernel" / "bin" / "python")
    return sys.executable


# Packages a kernel needs, besides coursekit itself and torch (installed first, separately).
_KERNEL_PACKAGES = (
    "numpy",
    "scipy",
    "matplotlib",
    "scikit-learn",
    "tqdm",
    "safetensors",
    "ipykernel",
)


def prepare_kernel_python(course_root: Path, torch_spec: str = "torch") -> Path:
    """As root: create the sandbox user and a kernel venv it can run. Idempotent.

    The venv is built from the system's python3 (root's own Python may sit in root's home,
    which the sandbox user cannot enter), with this machine's torch and coursekit installed
    editable from `course_root`, so the kernel imports the same coursekit as the grader.
    """
    if not is_root():
        return Path(sys.executable)
    check_available()
    if subprocess.run(["id", SANDBOX_USER], capture_output=True).returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SANDBOX_USER,
            ],
            check=True,
        )
    venv = course_root / ".cache" / "grading-kernel"
    python = venv / "bin" / "python"
    from importlib.metadata import requires

    wanted = [r.split(";")[0].strip() for r in requires("coursekit") or []]
    pins = [r for r in wanted if r.split("<")[0].split(">")[0].split("=")[0] in _KERNEL_PACKAGES]
    stamp = venv / "coursekit-requirements.json"
    wanted_stamp = json.dumps({"torch": torch_spec, "packages": pins}, sort_keys=True)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted_stamp:
        return python
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        raise SandboxUnavailable(
            "no /usr/bin/python3 to build the kernel venv from (apt-get install python3-venv)"
        )
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in (
        [system_python, "-m", "venv", "--clear", str(venv)],
        [*pip, torch_spec],
        [*pip, *pins],
        [*pip, "--no-deps", "--no-build-isolation", "-e", str(course_root)],
    ):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise SandboxUnavailable(f"{' '.join(step)} failed:\n{done.stdout}{done.stderr}")
    uid, _ = _sandbox_ids()
    check = [
        "setpriv",
        f"--reuid={uid}",
        "--clear-groups",
        str(python),
        "-c",
        "import torch, coursekit",
    ]
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise SandboxUnavailable(f"{SANDBOX_USER} cannot run {python}: is {course_root} readable?")
    stamp.write_text(wanted_stamp)
    return python


@functools.lru_cache(maxsize=8)
def _probe(python: str) -> dict:
    """Where the kernel's Python keeps itself and the packages the sandbox must show or hide."""
    code = (
        "import json, sys, importlib.util as u, os\n"
        "spec = lambda m: (u.find_spec(m) or None) and os.path.dirname(u.find_spec(m).origin)\n"
        "print(json.dumps({'prefix': sys.prefix, 'base_prefix': sys.base_prefix,"
        " 'executable': os.path.realpath(sys.executable),"
        " 'torch': spec('torch'), 'coursekit': spec('coursekit')}))"
    )
    result = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxUnavailable(f"kernel Python {python} does not run: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _stub_source(real: Path, module: str) -> str:
    """A module with the same top-level names as `real`, each raising when used."""
    names = {"classes": [], "functions": [], "values": []}
    if real.is_file():
        for node in ast.parse(real.read_text()).body:
            if isinstance(node, ast.ClassDef):
                names["classes"].append(node.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names["functions"].append(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names["values"] += [t.id for t in targets if isinstance(t, ast.Name)]
    message = (
        f"{module} is not available while this assignment is graded: "
        "implement the algorithm yourself"
    )
    lines = [
        f'"""Stands in for {module} while a submission is graded."""',
        f"_MESSAGE = {message!r}",
        "def _blocked(*args, **kwargs):",
        "    raise RuntimeError(_MESSAGE)",
        "class _Blocked:",
        "    def __init__(self, *args, **kwargs):",
        "        _blocked()",
        "    def __init_subclass__(cls, **kwargs):",
        "        if cls.__module__ != __name__:  # a submission's subclass",
        "            _blocked()",
    ]
    lines += [f"class {n}(_Blocked): pass" for n in names["classes"]]
    lines += [f"{n} = _blocked" for n in names["functions"]]
    lines += [f"{n} = None" for n in names["values"] if n not in ("__all__",)]
    lines.append(f"__all__ = {sorted(names['classes'] + names['functions'])!r}")
    lines.append(
        "def __getattr__(name):\n"
        "    if name.startswith('__'):  # import machinery probing, e.g. __path__\n"
        "        raise AttributeError(name)\n"
        "    _blocked()"
    )
    return "\n".join(lines) + "\n"


def _blocked_mounts(probe: dict, blocked: list[str], stub_dir: Path) -> tuple[list[tuple], list]:
    """(stub file or folder, path it hides) pairs and the bytecode folders to hide as well."""
    mounts, pycaches = [], []

    def stub_package(package_dir: Path, module: str) -> None:
        target = stub_dir / module
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        (target / "__init__.py").write_text(_stub_source(package_dir / "__init__.py", module))
        mounts.append((target, package_dir))

    for name in blocked:
        root, *rest = name.split(".")
        if probe.get(root) is None:
            continue
        base = Path(probe[root]).joinpath(*[p for p in rest if p != "*"])
        if rest and rest[-1] == "*":
            for path in sorted(base.iterdir()):
                module = f"{name[:-2]}.{path.stem}"
                if path.suffix == ".py" and path.name not in _TORCH_OPTIM_KEEP:
                    stub = stub_dir / f"{module}.py"
                    stub.write_text(_stub_source(path, module))
                    mounts.append((stub, path))
                elif path.is_dir() and (path / "__init__.py").exists():
                    stub_package(path, module)
            if (base / "__pycache__").is_dir():
                pycaches.append(base / "__pycache__")
        elif base.is_dir():
            stub_package(base, name)
        elif base.with_suffix(".py").is_file():  # a single-file module, e.g. coursekit.curvature
            stub = stub_dir / f"{name}.py"
            stub.write_text(_stub_source(base.with_suffix(".py"), name))
            mounts.append((stub, base.with_suffix(".py")))
            if (base.parent / "__pycache__").is_dir():
                pycaches.append(base.parent / "__pycache__")
    return mounts, sorted(set(pycaches))


def _cgroup_dirs() -> dict[str, Path]:
    """The cgroup v1 hierarchies this process may use, by controller."""
    if not is_root():
        return {}
    found = {}
    for controller in ("memory", "pids"):
        parent = _CGROUP_ROOT / controller
        if (parent / "cgroup.procs").exists() and os.access(parent, os.W_OK):
            found[controller] = parent / "coursekit"
    return found


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside bwrap, with its own limits, as an unprivileged user."""

    kernel_python = Unicode(
        "", help="Python that runs the kernel (default: see default_kernel_python)"
    ).tag(config=True)
    memory_limit = Integer(
        Limits.memory_bytes, help="bytes of memory for the kernel and its children"
    ).tag(config=True)
    max_processes = Integer(Limits.max_processes, help="processes and threads").tag(config=True)
    tmp_size = Integer(Limits.tmp_bytes, help="bytes in each of /tmp and the home folder").tag(
        config=True
    )
    blocked = List(
        Unicode(), help="modules replaced by stubs that raise, e.g. 'coursekit.optim'"
    ).tag(config=True)
    files = List(Unicode(), help="host files shown read-only in the kernel's home folder").tag(
        config=True
    )
    cleanup_wait = Float(5.0, help="seconds to wait for leftover processes to die").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        check_available()
        self._ids = _sandbox_ids()
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self._dir = Path(tempfile.mkdtemp(prefix="ck-", dir=shm))
        # Stubs live apart from the kernel's writable folder, readable by the sandbox user.
        self._stubs = Path(tempfile.mkdtemp(prefix="ck-stubs-"))
        self._stubs.chmod(0o755)
        if self._ids:
            os.chown(self._dir, *self._ids)
        self.transport = "ipc"
        self.connection_file = str(self._dir / "kernel.json")
        self.ip = str(self._dir / "kernel-ipc")
        self._cgroups: dict[str, Path] = {}
        self.oom_killed = False

    def write_connection_file(self, **kwargs) -> None:
        super().write_connection_file(**kwargs)
        if self._ids:  # written 0600 for the grader; the kernel's user must read it
            os.chown(self.connection_file, *self._ids)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        python = self.kernel_python or default_kernel_python(Path.cwd())
        probe = _probe(python)
        kernel = [python, "-m", "ipykernel_launcher", "-f", self.connection_file]
        kernel += extra_arguments or []
        launch = [sys.executable, "-I", "-S", str(_LAUNCH)]
        for controller, parent in _cgroup_dirs().items():
            group = parent / self._dir.name
            group.mkdir(parents=True, exist_ok=True)
            if controller == "memory":
                limit = self.memory_limit + _PAGE_CACHE_ROOM
                (group / "memory.limit_in_bytes").write_text(str(limit))
            else:
                (group / "pids.max").write_text(str(self.max_processes))
            self._cgroups[controller] = group
            launch += ["--cgroup", str(group)]
        launch += ["--limit", f"DATA={self.memory_limit}"]
        if "pids" not in self._cgroups and self._ids:
            launch += ["--limit", f"NPROC={self.max_processes}"]
        launch += ["--limit", f"FSIZE={Limits.file_bytes}", "--limit", "CORE=0", "--"]
        if self._ids:
            uid, gid = self._ids
            launch += [
                "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            ]  # fmt: skip
        return launch + self._bwrap(probe) + kernel

    def _bwrap(self, probe: dict) -> list[str]:
        args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns"]
        args += ["--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group",
                     "nsswitch.conf", "localtime", "alternatives", "fonts"):  # fmt: skip
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for device in sorted(glob.glob("/dev/nvidia*")):  # a GPU, when the machine has one
            args += ["--dev-bind", device, device]
        for folder in ("/tmp", HOME):  # before any bind below /tmp: mounts apply in order
            args += ["--size", str(self.tmp_size), "--tmpfs", folder]
        shown = {"/usr"}
        paths = [probe["prefix"], probe["base_prefix"], os.path.dirname(probe["executable"])]
        paths += [probe["coursekit"]] if probe.get("coursekit") else []
        for path in sorted(set(paths)):
            if not any(path == s or path.startswith(s + "/") for s in shown):
                args += ["--ro-bind", path, path]
                shown.add(path)
        stubs, pycaches = _blocked_mounts(probe, list(self.blocked), self._stubs)
        for stub, target in stubs:
            args += ["--ro-bind", str(stub), str(target)]
        for folder in pycaches:  # compiled copies of the hidden modules
            args += ["--size", "1", "--tmpfs", str(folder)]
        args += ["--bind", str(self._dir), str(self._dir)]
        # Copied first to a folder the sandbox user can read: the course may live under a folder
        # only root may enter (a temporary one, root's home).
        shown_files = self._stubs / "files"
        shown_files.mkdir(mode=0o755, exist_ok=True)
        for file in self.files:
            copy = shown_files / os.path.basename(file)
            shutil.copyfile(file, copy)
            copy.chmod(0o444)
            args += ["--ro-bind", str(copy), f"{HOME}/{copy.name}"]
        environment = {
            "HOME": HOME,
            "PATH": f"{os.path.dirname(probe['executable'])}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "COURSEKIT_SANDBOX": "1",
        }
        for key, value in environment.items():
            args += ["--setenv", key, value]
        return args + ["--chdir", HOME, "--"]

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        # The kernel must not write into the grader's terminal or logs: what it prints reaches
        # the grader as messages, which the executor bounds.
        kw.update(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(self._dir))
        kw.pop("env", None)
        await super()._async_launch_kernel(kernel_cmd, **kw)

    def cleanup_sandbox(self) -> None:
        """Kill whatever the kernel left running, note an OOM kill, remove its folders."""
        for controller, group in self._cgroups.items():
            deadline = time.monotonic() + self.cleanup_wait
            while time.monotonic() < deadline:
                pids = (group / "cgroup.procs").read_text().split()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            if controller == "memory":
                control = (group / "memory.oom_control").read_text().split()
                counts = dict(zip(control[::2], control[1::2]))
                self.oom_killed = self.oom_killed or int(counts.get("oom_kill", 0)) > 0
            try:
                group.rmdir()
            except OSError:
                pass
        self._cgroups = {}
        shutil.rmtree(self._dir, ignore_errors=True)
        shutil.rmtree(self._stubs, ignore_errors=True)
