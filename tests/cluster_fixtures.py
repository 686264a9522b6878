"""Real clusters on this one machine, for tests/test_cluster.py and test_elastic.py.

- SlurmCluster: munged, slurmctld and two slurmd "nodes" (n1, n2) on localhost,
  every file under a temporary directory, found through SLURM_CONF: nothing in
  /etc changes.
- NetnsHosts: network namespaces that act as hosts: each has an eth0 on a
  bridge of its own (in a namespace of its own too), an address the test
  chooses, a hostname of its own (unshare --uts), an /etc/hosts of its own
  (/etc/netns/NAME/hosts, which `ip netns exec` mounts over /etc/hosts) and its
  own sshd. Traffic stays inside these namespaces.

Every daemon is started here and stopped here by its PID (never by name); a
host's teardown also stops, by PID, whatever still runs in its namespace
(`ip netns pids`), so a rank left behind by a failed test cannot outlive it.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SBIN = ('/usr/sbin', '/sbin', '/usr/bin', '/bin')
NEEDED = {
    'slurmctld': 'slurm-wlm', 'slurmd': 'slurm-wlm', 'sbatch': 'slurm-wlm', 'srun': 'slurm-wlm',
    'scontrol': 'slurm-wlm', 'scancel': 'slurm-wlm', 'munged': 'munge', 'sshd': 'openssh-server',
    'ssh': 'openssh-client', 'ssh-keygen': 'openssh-client', 'ip': 'iproute2',
    'unshare': 'util-linux', 'setpriv': 'util-linux', 'mpirun': 'openmpi-bin',
}


def which(name):
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


_reason = None


def skip_reason():
    """Why this machine cannot run the cluster tests, or None."""
    global _reason
    if _reason is not None:
        return _reason or None
    if os.geteuid() != 0:
        _reason = 'cluster tests need root (network namespaces, sshd, slurmd)'
        return _reason
    missing = sorted({pkg for b, pkg in NEEDED.items() if not which(b)})
    if missing:
        _reason = f'missing packages {" ".join(missing)} (./bootstrap.sh setup installs them)'
        return _reason
    probe = f'dsprobe{uuid.uuid4().hex[:6]}'
    r = subprocess.run(['ip', 'netns', 'add', probe], capture_output=True, text=True)
    if r.returncode != 0:
        _reason = f'no network namespaces here: ip netns add: {r.stderr.strip()}'
        return _reason
    subprocess.run(['ip', 'netns', 'del', probe], capture_output=True)
    _reason = ''
    return None


def require_cluster():
    """Skip (or, DISTSOFTMAX_CLUSTER_TESTS=require, fail) where skip_reason() says why."""
    from harness import skip_unless_ready
    skip_unless_ready(skip_reason(), 'DISTSOFTMAX_CLUSTER_TESTS')


def cluster_env(**extra):
    """harness.env plus the worktree first on sys.path of every process, and sbin on PATH."""
    from harness import env
    e = env(**{'PYTHONPATH': ROOT, **extra})
    e['PATH'] = e['PATH'] + ':/usr/sbin:/sbin'
    return e


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Procs:
    """Daemons started by a fixture, stopped by PID in reverse order."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def start(self, name, cmd, **kw):
        log = open(os.path.join(self.logdir, f'{name}.out'), 'w')
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        log.close()
        self.procs.append((name, p))
        return p

    def stop(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def log(self, name):
        with open(os.path.join(self.logdir, f'{name}.out')) as f:
            return f.read()


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what}: not after {timeout} s')
        time.sleep(0.2)


# ---------------------------------------------------------------------- Slurm

SLURM_CONF = """\
ClusterName=distsoftmax
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sockdir}/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
# one spool and TmpFS per slurmd: PMIx's directories collide otherwise ("File exists")
SlurmdSpoolDir={d}/spool/%n
TmpFS={d}/tmp/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
SlurmdParameters=config_overrides
MailProg=/bin/true
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port={n1_port} CPUs=2 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port={n2_port} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """munged + slurmctld + slurmd n1, n2 on localhost; env() is what a client needs."""

    nodes = ('n1', 'n2')

    def __init__(self, d):
        # munged wants every directory above its socket open to all: pytest's
        # tmp_path is 0700, so the cluster lives in a directory of its own
        self.d = tempfile.mkdtemp(prefix='distsoftmax-slurm-', dir=str(d))
        self.top = self.d
        for sub in ('state', 'log', 'spool/n1', 'spool/n2', 'tmp/n1', 'tmp/n2'):
            os.makedirs(os.path.join(self.d, sub), exist_ok=True)
        self.procs = Procs(os.path.join(self.d, 'log'))
        self.conf = os.path.join(self.d, 'slurm.conf')
        self.sockdir = tempfile.mkdtemp(prefix='distsoftmax-munge-')
        os.chmod(self.sockdir, 0o755)

    def env(self, base=None, **extra):
        e = dict(base if base is not None else os.environ)
        e['SLURM_CONF'] = self.conf
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def start(self):
        d = self.d
        key = os.path.join(d, 'munge.key')
        with open(key, 'wb') as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.procs.start('munged', [which('munged'), '-F', f'--key-file={key}',
                                    f'--socket={self.sockdir}/munge.sock', f'--pid-file={d}/munged.pid',
                                    f'--log-file={d}/log/munged.log', f'--seed-file={d}/munged.seed'])
        wait_for(lambda: os.path.exists(f'{self.sockdir}/munge.sock'), 20, 'munged socket')
        ctld, n1, n2 = free_ports(3)
        with open(self.conf, 'w') as f:
            f.write(SLURM_CONF.format(d=d, sockdir=self.sockdir, ctld_port=ctld, n1_port=n1, n2_port=n2))
        self.procs.start('slurmctld', [which('slurmctld'), '-D', '-i'], env=self.env())
        for n in self.nodes:
            self.procs.start(f'slurmd-{n}', [which('slurmd'), '-D', '-N', n], env=self.env())
        wait_for(self._idle, 60, 'two idle Slurm nodes')
        return self

    def _idle(self):
        r = self.run('sinfo', '-h', '-N', '-o', '%N %t', check=False)
        states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
        return all(states.get(n) == 'idle' for n in self.nodes)

    def run(self, *cmd, check=True, timeout=60, **kw):
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                           env=self.env(kw.pop('env', None)), **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f'{cmd}: exit {r.returncode}\n{r.stdout}\n{r.stderr}')
        return r

    def job(self, job_id):
        """scontrol show job as a dict (JobState, ExitCode, Restarts, ...)."""
        r = self.run('scontrol', 'show', 'job', '-o', str(job_id), check=False)
        out = {}
        for tok in r.stdout.split():
            if '=' in tok:
                k, v = tok.split('=', 1)
                out.setdefault(k, v)
        return out

    def logs(self):
        logdir = os.path.join(self.d, 'log')
        text = []
        for name in sorted(os.listdir(logdir)):
            with open(os.path.join(logdir, name), errors='replace') as f:
                text.append(f'--- {name}\n' + ''.join(f.readlines()[-30:]))
        return '\n'.join(text)

    def stop(self):
        # jobs first (their steps are children of slurmstepd, not of slurmd)
        if os.path.exists(self.conf):
            self.run('scancel', '--full', '--user=root', check=False, timeout=30)
        self.procs.stop()
        # slurmstepd of steps that did not end: this cluster's only, by their PID
        for pid in _pids_with_env('SLURM_CONF', self.conf):
            _kill(pid)
        shutil.rmtree(self.sockdir, ignore_errors=True)


def _pids_with_env(key, value):
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                env = f.read().split(b'\0')
        except OSError:
            continue
        if f'{key}={value}'.encode() in env:
            found.append(int(pid))
    return found


def _kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------ namespace hosts

def sh(*cmd, check=True, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f'{cmd}: exit {r.returncode}: {r.stderr.strip()}')
    return r


SSHD_CONFIG = """\
Port {port}
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {d}/sshd-{name}.pid
PrintMotd no
"""

# the client side of every host: host keys checked against the hosts made
# here, nothing written to root's own ~/.ssh; no identity: the launchers
# must pass it (SSH_IDENTITY_FILE, MPIRUN_ARGS)
SSH_CONFIG = """\
Host *
    GlobalKnownHostsFile {d}/known_hosts
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
"""


class NetnsHosts:
    """N namespace hosts name -> address on one bridge, each with sshd on port 22.

    hosts_files: {host: /etc/hosts text} to override what a host resolves
    (default: every host's name to its address, on every host)."""

    def __init__(self, d, names, subnet='10.213.7', ssh_config=True, hosts_files=None,
                 extra_etc=None):
        self.d = str(d)
        os.makedirs(os.path.join(self.d, 'log'), exist_ok=True)
        self.tag = uuid.uuid4().hex[:6]
        self.names = list(names)
        self.addr = {n: f'{subnet}.{i + 1}' for i, n in enumerate(self.names)}
        self.ns = {n: f'ds{self.tag}h{i}' for i, n in enumerate(self.names)}
        self.switch = f'ds{self.tag}sw'
        self.procs = Procs(os.path.join(self.d, 'log'))
        self.ssh_config = ssh_config
        self.hosts_files = hosts_files or {}
        self.extra_etc = extra_etc or {}  # {host: {file: text}} over /etc in that host
        self.key = os.path.join(self.d, 'id_ed25519')
        self.made_run_sshd = False
        self.created = []

    def default_hosts(self):
        return '127.0.0.1 localhost\n' + ''.join(f'{a} {n}\n' for n, a in self.addr.items())

    def create(self):
        d = self.d
        sh('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', self.key)
        sh('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', f'{d}/host_key')
        shutil.copy(f'{self.key}.pub', f'{d}/authorized_keys')
        with open(f'{d}/host_key.pub') as f:
            hostkey = f.read().split()[:2]
        with open(f'{d}/known_hosts', 'w') as f:
            for n, a in self.addr.items():
                f.write(f'{n},{a} {" ".join(hostkey)}\n')
        sh('ip', 'netns', 'add', self.switch)
        self.created.append(self.switch)
        sh('ip', '-n', self.switch, 'link', 'add', 'br0', 'type', 'bridge')
        sh('ip', '-n', self.switch, 'link', 'set', 'br0', 'up')
        for i, n in enumerate(self.names):
            ns = self.ns[n]
            sh('ip', 'netns', 'add', ns)
            self.created.append(ns)
            etc = f'/etc/netns/{ns}'
            os.makedirs(etc)
            with open(f'{etc}/hosts', 'w') as f:
                f.write(self.hosts_files.get(n, self.default_hosts()))
            if self.ssh_config:
                os.makedirs(f'{etc}/ssh')
                with open(f'{etc}/ssh/ssh_config', 'w') as f:
                    f.write(SSH_CONFIG.format(d=d))
            for name, text in self.extra_etc.get(n, {}).items():
                with open(f'{etc}/{name}', 'w') as f:
                    f.write(text)
            port = f'v{self.tag}{i}'
            sh('ip', 'link', 'add', port, 'netns', self.switch, 'type', 'veth',
               'peer', 'name', 'eth0', 'netns', ns)
            sh('ip', '-n', self.switch, 'link', 'set', port, 'master', 'br0', 'up')
            sh('ip', '-n', ns, 'addr', 'add', f'{self.addr[n]}/24', 'dev', 'eth0')
            sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up')
            sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        return self

    def start_sshd(self, port=22):
        if not os.path.isdir('/run/sshd'):  # sshd's privilege separation directory
            os.makedirs('/run/sshd', mode=0o755)
            self.made_run_sshd = True
        for n in self.names:
            conf = f'{self.d}/sshd-{n}.conf'
            with open(conf, 'w') as f:
                f.write(SSHD_CONFIG.format(d=self.d, name=n, port=port))
            self.procs.start(f'sshd-{n}', self.exec_argv(n, [which('sshd'), '-D', '-e', '-f', conf]))
        for n in self.names:
            wait_for(lambda n=n: self.ssh(n, 'true', check=False).returncode == 0, 20,
                     f'sshd on {n}')
        return self

    setup = ''  # shell commands run in a host's mount namespace before its command

    def exec_argv(self, host, argv, user=None):
        """argv run in HOST: its network namespace and /etc/netns overlay, its hostname."""
        inner = f'hostname "$0" && {self.setup} exec "$@"'
        prefix = []
        if user is not None:
            prefix = [which('setpriv'), f'--reuid={user}', f'--regid={user}', '--clear-groups']
        return ['ip', 'netns', 'exec', self.ns[host], 'unshare', '--uts', 'sh', '-c', inner,
                host, *prefix, *argv]

    def ssh(self, host, command, check=True):
        """ssh from `host` to itself as root (the test's own probe)."""
        return sh(*self.exec_argv(host, ['ssh', '-i', self.key, host, command]), check=check)

    def pids(self, host):
        r = sh('ip', 'netns', 'pids', self.ns[host], check=False)
        return [int(p) for p in r.stdout.split()]

    def processes(self, host):
        """(pid, argv) of what runs in HOST besides its sshd."""
        mine = {p.pid for _, p in self.procs.procs}
        out = []
        for pid in self.pids(host):
            if pid in mine:
                continue
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    argv = f.read().decode(errors='replace').split('\0')
            except OSError:
                continue
            out.append((pid, argv))
        return out

    def ranks(self, host):
        """(pid, argv) of the ranks in HOST: python -m distsoftmax."""
        return [(pid, argv) for pid, argv in self.processes(host) if argv[1:3] == ['-m', 'distsoftmax']]

    def leftovers(self, host):
        """Ranks and whatever started them (horovodrun, mpirun, orted, ssh, a shell)."""
        return [(pid, ' '.join(argv)) for pid, argv in self.processes(host)
                if 'distsoftmax' in ' '.join(argv) or 'orted' in ' '.join(argv)]

    def assert_no_rank_left(self, wait=15):
        """No rank, nor its launcher, orted or ssh, still runs on any host (what is, is killed by PID)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(self.leftovers(n) for n in self.names):
            time.sleep(0.2)
        left = {n: self.leftovers(n) for n in self.names if self.leftovers(n)}
        for procs in left.values():
            for pid, _ in procs:
                _kill(pid)
        assert not left, f'ranks left behind: {left}'

    def link(self, host, up):
        """The link of HOST to the bridge, down (a cut network) or up again."""
        sh('ip', '-n', self.switch, 'link', 'set', f'v{self.tag}{self.names.index(host)}', 'up' if up else 'down')

    def destroy(self):
        for n in self.names:
            for pid in self.pids(n):
                _kill(pid)
        self.procs.stop()
        for ns in self.created:
            for pid in sh('ip', 'netns', 'pids', ns, check=False).stdout.split():
                _kill(int(pid))
            sh('ip', 'netns', 'del', ns, check=False)
            shutil.rmtree(f'/etc/netns/{ns}', ignore_errors=True)
        try:
            os.rmdir('/etc/netns')  # only if nothing else lives there
        except OSError:
            pass
        if self.made_run_sshd:
            shutil.rmtree('/run/sshd', ignore_errors=True)
        self.created = []


# --------------------------------------------------------- the MPIJob's pods

APP_UID = 1000  # the image's user (Dockerfile.gpu), home /home/app


def _needed_by_pods():
    """The Python installation the venv points to, and this checkout."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    return [prefix] if ROOT.startswith(prefix + '/') else [prefix, ROOT]


def _hidden_from_pods(path):
    """The first directory above path that uid 1000 cannot enter, or /tmp if
    path lies under it (each pod gets its own /tmp); None if path is reachable."""
    parts = path.split('/')
    for i in range(2, len(parts)):
        d = '/'.join(parts[:i])
        if d == '/tmp' or not os.stat(d).st_mode & 0o001:
            return d
    return None


class Pods(NetnsHosts):
    """NetnsHosts as the pods of an MPIJob: a user `app` (uid 1000, home
    /home/app) in each pod's /etc/passwd, a private /home and /tmp (tmpfs), the
    operator's ssh key pair mounted read-only at /home/app/.ssh (id_rsa,
    id_rsa.pub, authorized_keys), no ssh client configuration of the tests."""

    def __init__(self, d, names, aliases=None, **kw):
        # uid 1000 must reach these files: a directory of its own, open to all
        self.top = tempfile.mkdtemp(prefix='distsoftmax-pods-', dir='/dev/shm')
        os.chmod(self.top, 0o755)
        super().__init__(d, names, ssh_config=False, **kw)
        self.aliases = aliases or {}
        self.keys = os.path.join(self.top, 'ssh')
        self.shared = os.path.join(self.top, 'shared')
        with open('/etc/passwd') as f:
            passwd = [line for line in f if line.split(':')[2:3] != [str(APP_UID)]]
        with open('/etc/group') as f:
            group = [line for line in f if line.split(':')[2:3] != [str(APP_UID)]]
        passwd.append(f'app:x:{APP_UID}:{APP_UID}::/home/app:/bin/sh\n')
        group.append(f'app:x:{APP_UID}:\n')
        for n in self.names:
            self.extra_etc.setdefault(n, {}).update(passwd=''.join(passwd), group=''.join(group))
        # uid 1000 must reach the interpreter (pyenv lives under /root, 0700) and
        # this checkout (a CI clone may sit in a 0700 temporary directory, or in
        # /tmp, which the pods get fresh): each is bind-mounted aside, then put
        # back at its own path under a tmpfs that everybody may enter
        self.setup = 'mount --make-rprivate / && '
        moves = {}
        for i, path in enumerate(_needed_by_pods()):
            blocked = _hidden_from_pods(path)
            if blocked:
                stage = os.path.join(self.top, f'stage{i}')
                os.makedirs(stage)
                self.setup += f'mount --bind {path} {stage} && '
                moves.setdefault(blocked, []).append((path, stage))
        self.setup += 'mount -t tmpfs -o mode=1777 tmpfs /tmp && '
        for blocked, items in moves.items():
            if blocked != '/tmp':
                self.setup += f'mount -t tmpfs -o mode=755 tmpfs {blocked} && '
            for path, stage in items:
                self.setup += f'mkdir -p {path} && mount --move {stage} {path} && '
        self.setup += ('mount -t tmpfs -o mode=755 tmpfs /home && mkdir -p /home/app/.ssh && '
                       f'chown {APP_UID}:{APP_UID} /home/app && '
                       f'mount --bind {self.keys} /home/app/.ssh && '
                       'mount -o remount,bind,ro /home/app/.ssh && ')

    def default_hosts(self):
        return '127.0.0.1 localhost\n' + ''.join(
            f'{a} {" ".join(self.aliases.get(n, []))} {n}\n' for n, a in self.addr.items())

    def create(self):
        os.makedirs(self.keys)
        sh('ssh-keygen', '-q', '-t', 'ecdsa', '-N', '', '-f', f'{self.keys}/id_rsa')
        shutil.copy(f'{self.keys}/id_rsa.pub', f'{self.keys}/authorized_keys')
        os.makedirs(self.shared)
        for path in (self.keys, self.shared, *[os.path.join(self.keys, f) for f in os.listdir(self.keys)]):
            os.chown(path, APP_UID, APP_UID)
        return super().create()

    def start(self, host, name, argv, **kw):
        """A pod's container command, as uid 1000, kept running (stopped at destroy)."""
        return self.procs.start(name, self.exec_argv(host, argv, user=APP_UID), **kw)

    def destroy(self):
        super().destroy()
        shutil.rmtree(self.top, ignore_errors=True)
