"""What pbs_mom does for a job: start the script with PBS's environment, signal it, measure it,
and copy its output where the job asked when it ends.

Each job runs as ``bash SCRIPT`` in its own session (so one killpg reaches everything it
started), with cwd = $HOME as on a real execution host. Output goes to the spool first and is
copied to Output_Path/Error_Path at the end, which is when real PBS delivers it too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pbs_emulator import units
from pbs_emulator.home import Home
from pbs_emulator.model import Job

BIN_DIR = Path(__file__).resolve().parent.parent / "bin"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A running job process as the server tracks it (not persisted)."""

    popen: subprocess.Popen[bytes]
    running_since: float | None
    kill_at: float | None = None


def user_home(config_home: str | None) -> str:
    """The job's HOME: configured, or the home of the user the server runs as."""
    if config_home:
        return config_home
    return pwd.getpwuid(os.getuid()).pw_dir


def exit_status(wait_status: int) -> int:
    """PBS's Exit_status for a wait() status: the code, or 256 + signal."""
    if os.WIFSIGNALED(wait_status):
        return 256 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


class Mom:
    """Starts, signals and cleans up job processes for one home."""

    def __init__(self, home: Home, server: str) -> None:
        self.home = home
        self.server = server

    def spool_files(self, job: Job) -> tuple[Path, Path]:
        return self.home.spool / f"{job.id}.OU", self.home.spool / f"{job.id}.ER"

    def environment(self, job: Job, nodefile: Path, tmpdir: Path) -> dict[str, str]:
        """PBS's job environment: Variable_List, then the PBS_* variables of this run."""
        home = job.jobdir or "/"
        python_dir = os.path.dirname(sys.executable)
        env = {
            "HOME": home,
            "USER": job.owner,
            "LOGNAME": job.owner,
            "SHELL": "/bin/bash",
            "PATH": f"{SYSTEM_PATH}:{BIN_DIR}:{python_dir}",
            "PBS_EMULATOR_HOME": str(self.home.root),
            # PBS commands inside the job act as its owner, as on a real node (not as the
            # user the emulator runs as, who may be root and so a manager).
            "PBS_EMULATOR_USER": job.owner,
        }
        env.update(dict(job.variables))
        ncpus = str(job.chunks[0].ncpus) if job.chunks else "1"
        env.update(
            {
                "PBS_ENVIRONMENT": "PBS_BATCH",
                "ENVIRONMENT": "BATCH",
                "PBS_JOBID": job.id,
                "PBS_JOBNAME": job.name,
                "PBS_QUEUE": job.queue,
                "PBS_JOBCOOKIE": secrets.token_hex(16).upper(),
                "PBS_NODENUM": "0",
                "PBS_TASKNUM": "1",
                "PBS_MOMPORT": "15003",
                "PBS_NODEFILE": str(nodefile),
                "PBS_JOBDIR": home,
                "TMPDIR": str(tmpdir),
                "NCPUS": ncpus,
                "OMP_NUM_THREADS": ncpus,
            }
        )
        gpus = [str(g) for a in job.allocation for g in a.gpus]
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if job.parent is not None:
            env["PBS_ARRAY_INDEX"] = str(job.index)
            env["PBS_ARRAY_ID"] = job.parent
        return env

    def launch(self, job: Job, script: Path) -> subprocess.Popen[bytes]:
        """Start the job's script; returns the process (its pid is the session id)."""
        nodefile = self.home.aux / job.id
        lines = [a.node for a in job.allocation for _ in range(mpiprocs(a.resources))]
        nodefile.write_text("".join(f"{n}\n" for n in lines or [self.server]))
        tmpdir = self.home.tmp / f"pbs.{job.id}"
        tmpdir.mkdir(parents=True, exist_ok=True)
        Path(job.jobdir or "/").mkdir(parents=True, exist_ok=True)
        out, err = self.spool_files(job)
        out_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        err_fd = out_fd if job.join != "n" else os.open(err, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            return subprocess.Popen(
                [job.shell or "/bin/bash", str(script)],
                cwd=job.jobdir or "/",
                env=self.environment(job, nodefile, tmpdir),
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=err_fd,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(out_fd)
            if err_fd != out_fd:
                os.close(err_fd)

    @staticmethod
    def signal(job: Job, signum: int) -> None:
        """Send `signum` to every process of the job (its session's process group)."""
        if job.session_id:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.session_id, signum)

    @staticmethod
    def usage(job: Job, walltime: float) -> dict[str, str]:
        """resources_used of a running job, read from /proc (0 when it cannot be read)."""
        cput, rss, vsz = 0.0, 0, 0
        if job.session_id:
            try:
                fields = Path(f"/proc/{job.session_id}/stat").read_text().rsplit(")", 1)[1].split()
                cput = sum(int(x) for x in fields[11:15]) / CLOCK_TICKS
                for line in Path(f"/proc/{job.session_id}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                    elif line.startswith("VmSize:"):
                        vsz = int(line.split()[1])
            except (OSError, ValueError, IndexError):
                pass
        return used_dict(job, cput, rss, vsz, walltime)

    def stage_out(self, job: Job) -> None:
        """Deliver the spooled stdout/stderr to Output_Path/Error_Path (or undelivered/)."""
        out, err = self.spool_files(job)
        targets = [(out, job.out_path, "o")]
        if job.join == "n":
            targets.append((err, job.err_path, "e"))
        for spooled, path, kind in targets:
            if not spooled.exists():
                spooled.touch()
            destination = Path(path.split(":", 1)[-1])
            if destination.is_dir():
                destination = destination / default_output_name(job, kind)
            try:
                shutil.copyfile(spooled, destination)
            except OSError:
                shutil.copyfile(spooled, self.home.undelivered / spooled.name)
        for leftover in (out, err, self.home.aux / job.id):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(self.home.tmp / f"pbs.{job.id}", ignore_errors=True)


def default_output_name(job: Job, kind: str) -> str:
    """``name.o12``, or ``name.o10.3`` for subjob 3 of array 10."""
    suffix = "" if job.index is None else f".{job.index}"
    return f"{job.name}.{kind}{job.seq}{suffix}"


def used_dict(job: Job, cput: float, rss_kb: int, vmem_kb: int, walltime: float) -> dict[str, str]:
    """resources_used as PBS reports it (cpupercent, cput, mem, ncpus, vmem, walltime)."""
    percent = int(100 * cput / walltime) if walltime >= 1 else 0
    return {
        "cpupercent": str(percent),
        "cput": units.hms(cput),
        "mem": f"{rss_kb}kb",
        "ncpus": job.resource_list.get("ncpus", "1"),
        "vmem": f"{vmem_kb}kb",
        "walltime": units.hms(walltime),
    }


def mpiprocs(resources: list[tuple[str, str]]) -> int:
    """PBS_NODEFILE has one line per MPI process: mpiprocs of the chunk, 1 by default."""
    value = dict(resources).get("mpiprocs", "1")
    return int(value) if value.isdigit() else 1


SIGNALS = {name[3:]: int(sig) for name, sig in signal.Signals.__members__.items()}
