"""The emulated pbs_server + pbs_sched + pbs_mom: one process per home, started on demand.

Why one long-lived process rather than a runner per job: scheduling decisions (capacity,
dependencies, array limits, begin times) need one view of all jobs, and a job's exit status
is only exact when its parent waits for it. The first command that finds no server starts one
(``bin/pbs_server``, detached); it exits on its own after ``idle_exit_seconds`` with nothing
to do, and at once when its home disappears, so a test that forgets to stop it leaks nothing
for long. The fixture stops it (and every job) at teardown.

Commands talk to it over an abstract Unix socket, one JSON request and one JSON answer per
connection. Faults are real: "server down" closes the client socket (connection refused),
"hang" delays every answer, node failures kill the jobs' processes. A second socket for
``pbs-emulator`` admin requests stays open whatever the faults.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pbs_emulator import handlers, lifecycle, scheduler
from pbs_emulator.errors import SYSTEM, PbsError
from pbs_emulator.home import Home
from pbs_emulator.state import ServerState

HISTORY_PURGE_INTERVAL = 60.0
MAX_SLEEP = 1.0


def read_request(conn: socket.socket) -> dict[str, Any] | None:
    """One JSON line from a client (None when it sent nothing usable)."""
    conn.settimeout(5.0)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None


def send(conn: socket.socket, answer: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(answer).encode() + b"\n")
    conn.close()


def listener(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(name)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def job_process_alive(pid: int, home: Home) -> bool:
    """Whether `pid` is still one of this home's job processes (guards against pid reuse)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"PBS_EMULATOR_HOME={home.root}".encode() in environ.split(b"\0")


class Server:
    """The event loop: sockets, child exits, timers, scheduling cycles."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.st = ServerState(home)
        self.st.load()
        self.st.pid_file()
        self.sel = selectors.DefaultSelector()
        self.client_sock: socket.socket | None = None
        self.apply_listen_state()  # before the admin socket: starters wait for that one
        self.admin_sock = listener(home.socket_name(admin=True))
        self.sel.register(self.admin_sock, selectors.EVENT_READ, self.accept_admin)
        self.pending: list[tuple[float, socket.socket, dict[str, Any]]] = []
        self.stopping = False
        self.idle_since = time.time()
        self.last_purge = 0.0
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        self.sel.register(wake_r, selectors.EVENT_READ, self.drain)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGHUP, lambda *_: self.reload())
        self.recover()

    # ---- sockets ---------------------------------------------------------------------------------
    def apply_listen_state(self) -> None:
        """Listen for clients unless the "server down" fault is on (then: connection refused)."""
        down = bool(self.st.config.get("faults", {}).get("server_down"))
        if down and self.client_sock is not None:
            self.sel.unregister(self.client_sock)
            self.client_sock.close()
            self.client_sock = None
        elif not down and self.client_sock is None:
            self.client_sock = listener(self.home.socket_name())
            self.sel.register(self.client_sock, selectors.EVENT_READ, self.accept_client)

    def accept_client(self, sock: socket.socket) -> None:
        hang = float(self.st.config.get("faults", {}).get("hang_seconds") or 0)
        for conn in self.accept_all(sock):
            request = read_request(conn)
            if request is None:
                conn.close()
            elif hang > 0:
                self.pending.append((time.time() + hang, conn, request))
            else:
                send(conn, self.answer(request))

    def accept_admin(self, sock: socket.socket) -> None:
        for conn in self.accept_all(sock):
            request = read_request(conn)
            if request is None:
                conn.close()
                continue
            send(conn, self.admin(request))

    @staticmethod
    def accept_all(sock: socket.socket) -> list[socket.socket]:
        conns: list[socket.socket] = []
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return conns
            conn.setblocking(True)
            conns.append(conn)

    def drain(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 512):
                pass

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.idle_since = time.time()
        try:
            return handlers.handle(self.st, request)
        except PbsError as exc:
            return {"error": [exc.code, exc.text]}
        except Exception:  # a bug here must not take the server (and its jobs) down
            traceback.print_exc()
            sys.stderr.flush()
            return {"error": [SYSTEM, "System error"]}

    def admin(self, request: dict[str, Any]) -> dict[str, Any]:
        """pbs-emulator requests: ping, reload (config and faults), rerun, shutdown."""
        self.idle_since = time.time()
        op = request.get("op")
        if op == "reload":
            self.reload()
        elif op == "rerun":
            return handlers.rerun(
                self.st, {**request, "user": "root", "host": self.st.server, "force": True}
            )
        elif op == "shutdown":
            self.stopping = True
        elif op != "ping":
            return {"error": [0, f"unknown admin request {op!r}"]}
        return {"pid": os.getpid()}

    # ---- events ----------------------------------------------------------------------------------
    def on_term(self, *_: object) -> None:
        self.stopping = True

    def reload(self) -> None:
        """Apply config.json again: faults, queues, and nodes going down or coming back."""
        before = {name: node.down for name, node in self.st.nodes.items()}
        self.st.reload()
        self.apply_listen_state()
        now = time.time()
        for name, node in self.st.nodes.items():
            if node.down and not before.get(name, False):
                self.node_went_down(name, now)

    def node_went_down(self, name: str, now: float) -> None:
        """The node's MoM is gone: its jobs' processes die with it; the server notices later."""
        for job in list(self.st.jobs.values()):
            on_node = any(a.node == name for a in job.allocation)
            if on_node and job.state in ("R", "S", "E") and job.id in self.st.procs:
                job.kill_reason = "nodefail"
                job.node_lost_at = now
                self.st.mom.signal(job, signal.SIGKILL)

    def reap(self) -> None:
        now = time.time()
        while True:
            try:
                pid, wait_status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for job_id, proc in list(self.st.procs.items()):
                if proc.popen.pid == pid:
                    proc.popen.returncode = wait_status
                    job = self.st.jobs[job_id]
                    cput = usage.ru_utime + usage.ru_stime
                    lifecycle.process_ended(self.st, job, wait_status, (cput, usage.ru_maxrss), now)
                    self.st.wants_schedule = True

    def timers(self) -> None:
        now = time.time()
        for job_id, proc in list(self.st.procs.items()):
            job = self.st.jobs[job_id]
            if proc.kill_at is not None and now >= proc.kill_at:
                proc.kill_at = None
                self.st.mom.signal(job, signal.SIGKILL)
            lifecycle.check_walltime(self.st, job, proc, now)
        for job_id, deadline in list(self.st.exiting.items()):
            if now >= deadline and job_id in self.st.jobs:
                lifecycle.finalize(self.st, self.st.jobs[job_id], now)
        limit = float(self.st.config.get("node_fail_requeue", 310))
        for job in list(self.st.jobs.values()):
            if (
                job.kill_reason == "nodefail"
                and job.id not in self.st.procs
                and job.state in ("R", "S")
            ):
                node = job.allocation[0].node if job.allocation else self.st.server
                back = not self.st.nodes.get(node, None) or not self.st.nodes[node].down
                if back or (limit > 0 and now - (job.node_lost_at or now) >= limit):
                    lifecycle.node_failed(self.st, job, node, now)
            elif job.state == "W" and (job.exec_time or 0) <= now:
                self.st.wants_schedule = True
        due = [p for p in self.pending if p[0] <= now]
        self.pending = [p for p in self.pending if p[0] > now]
        for _, conn, request in due:
            send(conn, self.answer(request))
        if now - self.last_purge > HISTORY_PURGE_INTERVAL:
            self.purge_history(now)

    def purge_history(self, now: float) -> None:
        self.last_purge = now
        keep = float(self.st.config.get("job_history_duration", 1209600))
        for job in list(self.st.jobs.values()):
            if (
                job.parent is None
                and job.state == "F"
                and (job.history_timestamp or now) + keep < now
            ):
                lifecycle.forget(self.st, job)

    def next_timeout(self) -> float:
        if self.st.wants_schedule:
            return 0.0
        now = time.time()
        deadlines = [p[0] for p in self.pending]
        deadlines += list(self.st.exiting.values())
        for job_id, proc in self.st.procs.items():
            if proc.kill_at is not None:
                deadlines.append(proc.kill_at)
            walltime = lifecycle.walltime_deadline(self.st.jobs[job_id], proc)
            if walltime is not None:
                deadlines.append(walltime)
        deadlines += [
            float(j.exec_time) for j in self.st.jobs.values() if j.state == "W" and j.exec_time
        ]
        return max(0.0, min([now + MAX_SLEEP, *deadlines]) - now)

    def busy(self) -> bool:
        """Anything that needs the server to stay up (running jobs, timers, waiting jobs)."""
        if self.st.procs or self.st.exiting or self.pending:
            return True
        return any(
            j.state == "W" or (j.kill_reason == "nodefail" and j.state in ("R", "S"))
            for j in self.st.jobs.values()
        )

    def recover(self) -> None:
        """Jobs a previous server left running: their processes are gone or unreachable."""
        now = time.time()
        for job in list(self.st.jobs.values()):
            if job.state in ("R", "S") and job.id not in self.st.procs:
                if job.session_id and job_process_alive(job.session_id, self.home):
                    self.st.mom.signal(job, signal.SIGKILL)
                lifecycle.node_failed(self.st, job, self.st.server, now)
            elif job.state == "E":
                self.st.exiting[job.id] = now

    # ---- main loop -------------------------------------------------------------------------------
    def turn(self) -> None:
        """One loop turn: sockets and signals, exits, timers, a scheduling cycle, the disk."""
        for key, _ in self.sel.select(self.next_timeout()):
            key.data(key.fileobj)
        self.reap()
        self.timers()
        if self.st.wants_schedule:
            scheduler.schedule(self.st, time.time())
        self.st.flush()

    def run(self) -> None:
        while not self.stopping:
            try:
                self.turn()
            except Exception:  # log and go on: a dead server would strand every job
                traceback.print_exc()
                sys.stderr.flush()
                time.sleep(0.1)
            if not self.home.root.exists():
                break
            if self.busy():
                self.idle_since = time.time()
            elif time.time() - self.idle_since > float(self.st.config.get("idle_exit_seconds", 30)):
                break
        self.shutdown()

    def shutdown(self) -> None:
        """Stop: every job process is killed (a stopped server must leave nothing behind)."""
        for job_id in list(self.st.procs):
            self.st.mom.signal(self.st.jobs[job_id], signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.st.flush()
        for _, conn, _ in self.pending:
            conn.close()
        with contextlib.suppress(OSError):
            (self.home.server_priv / "server.pid").unlink()


def detach(log: Path) -> None:
    """Become a daemon: the starting command returns at once; stdio goes to server.out."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(devnull)
    os.close(out)


def main(argv: list[str]) -> int:
    """``pbs_server [HOME] [--foreground]``: serve one home until idle, stopped, or gone."""
    foreground = "--foreground" in argv
    args = [a for a in argv if a != "--foreground"]
    home = Home(args[0]) if args else Home.from_env()
    home.ensure()
    if not foreground:
        detach(home.server_out)
    lock = os.open(home.server_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another server already serves this home
    try:
        Server(home).run()
    except OSError as exc:
        print(f"pbs_server: {exc}", file=sys.stderr)
        return 1
    return 0
