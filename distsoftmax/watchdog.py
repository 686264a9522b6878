"""No job hangs: every rank of a job of several watches its own progress.

The main thread marks where it is (`at(what)`) before every collective and at
every step. A thread looks once a second: when no mark has come for `timeout`
seconds (`startup` seconds before the first step), this rank waits for a peer
that stopped (SIGSTOP, a hung disk, a swapped-out node) or sits behind a cut
link. A stopped rank cannot speak, so the survivors do: each asks every other
rank, over a side channel of plain TCP (one listening socket a rank, its
address shared when the job starts), whether it still runs. The lowest rank
that runs says the one line, naming where it waited and the ranks that did not
answer, and leaves; the launcher ends the rest (the stopped one too, with
SIGKILL), and a survivor that nobody ends leaves by itself GRACE seconds later.

Defaults, beside torch.distributed's (30 min for Gloo, 10 min for NCCL): a
healthy step here takes 1-2 ms and the longest healthy wait seen in the test
suite, rank 0 writing a checkpoint or a plot while the others wait, well
under 10 s, so 300 s leaves a wide margin; start-up (imports, data, the
rendezvous) gets max(600 s, the timeout), enough for 64 ranks on 2 cores.
"""
import fcntl
import os
import signal
import socket
import struct
import sys
import threading
import time

DEFAULT_TIMEOUT = 300.0     # s, --timeout / DISTSOFTMAX_TIMEOUT
MIN_STARTUP = 600.0         # s, before the first step
GRACE = 10.0                # s: a quiet survivor waits this long for the launcher
PING = 2.0                  # s: a rank that does not answer within this is taken as stopped
TICK = 1.0                  # s between two looks
STOPPED = 3.0               # s: a look this late means this process was stopped itself
SIGNALLED = 2.0             # s stuck after a signal arrived: leave
FORWARD = 1.0               # s for a launcher to pass on the line before it is ended
SIOCGIFADDR = 0x8915        # Linux: an interface's IPv4 address


def startup_allowance(timeout):
    return max(MIN_STARTUP, timeout)


class SideChannel:
    """A rank's answer to "do you still run?": one listening TCP socket, a
    thread that answers every connection with `distsoftmax RANK SIGNAL`
    (SIGNAL: the signal number this rank caught, 0 if none), and the peers'
    addresses, shared by the job (meet). The rank may change (elastic.py
    re-forms the job): meet() sets it with the peers of the new world."""

    def __init__(self, *, rank, signalled, backlog=8):
        self.rank, self.signalled = rank, signalled
        self.peers = {}             # rank -> (hostname, [addresses], port)
        self._closed = threading.Event()
        self._server = socket.create_server(('0.0.0.0', 0), backlog=max(backlog, 8))
        threading.Thread(target=self._answer, name='distsoftmax-alive', daemon=True).start()

    def address(self):
        """This rank's side channel, as text to share: host name, addresses, port."""
        return f'{socket.gethostname()} {",".join(_ipv4_addresses())} {self._server.getsockname()[1]}'

    def meet(self, addresses, rank=None):
        """Every rank's address() text, by rank (this rank's own among them)."""
        self.rank = self.rank if rank is None else rank
        self.peers = {}
        for r, text in enumerate(addresses):
            host, ips, port = text.split(' ')
            self.peers[r] = (host, ips.split(','), int(port))

    def signal_of(self, rank):
        """The signal number that rank caught (0 if none), or None if it does not answer within PING."""
        return _ask(self.peers[rank], rank, same_host=self.peers[rank][0] == socket.gethostname())

    def alive(self, ranks=None):
        """Which of these peers (default: every other rank) answer, asked at once."""
        found, threads = set(), []
        ranks = [r for r in self.peers if r != self.rank] if ranks is None else ranks

        def ask(r):
            if self.signal_of(r) is not None:
                found.add(r)
        for r in ranks:
            threads.append(threading.Thread(target=ask, args=(r,), daemon=True))
            threads[-1].start()
        for t in threads:
            t.join(PING * 4)
        return found

    def on_other_host(self, ranks):
        here = socket.gethostname()
        return any(self.peers[r][0] != here for r in ranks)

    def close(self):
        self._closed.set()
        try:
            self._server.close()
        except OSError:
            pass

    def _answer(self):
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return          # closed
            with conn:
                try:
                    conn.sendall(f'distsoftmax {self.rank} {self.signalled() or 0}\n'.encode())
                except OSError:
                    pass


class Watchdog:
    def __init__(self, *, rank, size, timeout, signalled, exit_code=1):
        """signalled(): the signal number this rank caught, or None (signals.Signals.first)."""
        self.rank, self.size, self.timeout, self.exit_code = rank, size, timeout, exit_code
        self.signalled = signalled
        self.startup = startup_allowance(timeout)
        self.what, self.since, self.stepping = 'starting', time.monotonic(), False
        self.was_stopped = False    # this process was stopped itself: it says nothing
        self.longest = 0.0          # the longest healthy wait, in s: reported in the summary
        self.channel = SideChannel(rank=rank, signalled=signalled, backlog=size)
        self.address, self.meet, self.signal_of = self.channel.address, self.channel.meet, self.channel.signal_of
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name='distsoftmax-watchdog', daemon=True).start()

    @property
    def peers(self):
        return self.channel.peers

    # -- the main thread's side
    def at(self, what, step=False):
        """The main thread is about to wait in `what` (a collective, a step)."""
        now = time.monotonic()
        if self.stepping:
            self.longest = max(self.longest, now - self.since)
        self.what, self.since = what, now
        self.stepping = self.stepping or step

    def stop(self):
        self._stop.set()
        self.channel.close()

    # -- the thread
    def _watch(self):
        last = time.monotonic()
        while not self._stop.wait(TICK):
            now = time.monotonic()
            if now - last > TICK + STOPPED:
                # this process itself was stopped (SIGSTOP, then SIGCONT from the launcher
                # that now ends it) or starved: not a peer's fault, so the clock restarts
                self.since, self.was_stopped = now, True
            last = now
            limit = self.timeout if self.stepping else self.startup
            waited = now - self.since
            signum = self.signalled()
            if signum and waited > SIGNALLED:
                # a signal while stuck in a collective: a launcher ending the job (or a
                # user); the loop cannot read it, so leave now, as the signal asks
                self._leave(128 + signum, f'distsoftmax: interrupted by {signal.Signals(signum).name} while '
                                          f'waiting in {self.what}; stopping\n')
            if waited > limit:
                self._fire(waited, limit)
                return

    def _leave(self, code, line):
        if self.rank == 0 and not self.was_stopped:
            try:
                os.write(sys.stderr.fileno(), line.encode())
            except (OSError, ValueError):
                pass
        os._exit(code)

    def _fire(self, waited, limit):
        if self.was_stopped:    # our own stop, not a peer's: the launcher that resumed us ends us
            time.sleep(GRACE)
            os._exit(self.exit_code)
        if not self.peers and self.rank != 0:
            # stuck before the side channel's addresses were shared: nobody can be
            # asked, so rank 0 alone speaks, and the others leave quietly
            time.sleep(GRACE)
            os._exit(self.exit_code)
        alive = self.channel.alive()
        silent = sorted(r for r in self.peers if r != self.rank and r not in alive)
        if any(r < self.rank for r in alive):
            # a lower rank runs and will say it; leave if the launcher does not end us
            time.sleep(GRACE)
            os._exit(self.exit_code)
        who = (f'rank(s) {", ".join(map(str, silent))} did not answer (stopped, or cut off by the network)'
               if silent else 'every rank answered, so one is stuck outside a collective' if self.peers
               else 'the ranks had not yet shared their side channel, so which one is not known')
        limit_says = f'--timeout {limit:g} s' if self.stepping else f'the start-up allowance, {limit:g} s'
        line = (f'distsoftmax: error: rank {self.rank} waited {waited:.0f} s in {self.what} ({limit_says}): '
                f'{who}; stopping the job (a checkpoint in --checkpoint-dir resumes with --resume)\n')
        try:
            os.write(sys.stderr.fileno(), line.encode())
        except (OSError, ValueError):
            pass
        if self.channel.on_other_host(silent):
            _end_open_mpi_launcher()    # a host out of reach: Open MPI's own would wait for TCP
        os._exit(self.exit_code)


def _end_open_mpi_launcher():
    """A rank on another host is out of reach: if Open MPI (mpirun, or its daemon
    orted) started this rank, end it too. Cut off from its peer, it would wait
    for TCP's retransmission timeout (about 15 minutes) to deliver the job's end;
    ended, the launcher above it (horovodrun, multihost.sh) sees the job fail."""
    parent = os.getppid()
    try:
        with open(f'/proc/{parent}/comm') as f:
            if f.read().strip() not in ('orted', 'mpirun', 'orterun'):
                return
        # SIGKILL: on SIGTERM mpirun would kill this rank within a second and then
        # wait for the host it cannot reach; what it started here ends with it (their
        # own watchdogs, and multihost.sh's sweep of this run's processes). First a
        # moment for it to pass on the line this rank wrote (its output goes through it).
        time.sleep(FORWARD)
        os.kill(parent, signal.SIGKILL)
    except OSError:                         # gone already
        pass


def _ask(peer, rank, same_host):
    """The signal number that the rank's side channel reports (0: none), or None
    if it does not answer within PING."""
    host, ips, port = peer
    candidates = (['127.0.0.1'] if same_host else []) + [ip for ip in ips if not ip.startswith('127.')]
    for ip in candidates:
        try:
            with socket.create_connection((ip, port), timeout=PING) as s:
                s.settimeout(PING)
                words = s.recv(64).decode(errors='replace').split()
        except OSError:
            continue
        if len(words) == 3 and words[:2] == ['distsoftmax', str(rank)]:
            return int(words[2])
    return None


def _ipv4_addresses():
    """This host's IPv4 addresses, every interface's (Linux)."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack('256s', name[:15].encode()))
            except OSError:
                continue        # no IPv4 address
            found.append(socket.inet_ntoa(packed[20:24]))
    return found or ['127.0.0.1']
