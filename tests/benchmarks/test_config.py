"""Speed of the config server and its client, side by side with panoptes-utils 0.2.29.

Both servers serve the same copy of testing.yaml on loopback, in one run:

- ``/get-config`` and ``/set-config`` with 1 and 8 concurrent clients, each
  opening a new connection per request or keeping one alive: requests/s
  (median of the rounds), p50/p99 latency, errors, and the server's CPU time
  per request (the steadiest figure on a shared machine);
- ``get_config()`` per call, in a fresh process for each library;
- ``panoptes config get KEY`` as a whole process, against
  ``panoptes-config-server get KEY``.

Run ``pytest tests/benchmarks/test_config.py --benchmark-only``; the side-by-side
table is printed at the end. The baseline runs from /tmp/baseline-venv (or
$PANOPTES_BASELINE_VENV) and is skipped if it is not installed. Every load is
bounded in requests and in seconds.
"""

import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.conftest import alternate
from panoptes_cli.config import client
from panoptes_cli.config.server import config_server

BASELINE_PYTHON = Path(os.environ.get('PANOPTES_BASELINE_VENV', '/tmp/baseline-venv')) / 'bin' / 'python'
TESTING_YAML = Path(__file__).resolve().parents[2].parent / 'shared' / 'data' / 'testing.yaml'

OURS = 'panoptes-cli'
BASELINE = 'panoptes-utils 0.2.29'
ROUNDS = 5
# Per round: requests per client, and a time limit (the baseline's keep-alive
# connections stall 44 ms a request, so they hit the time limit first).
REQUESTS_PER_CLIENT = {1: 400, 8: 150}
MAX_SECONDS = 2.0
BODIES = {
    'get': ('/get-config', b'{"key": "location.horizon"}'),
    'set': ('/set-config', b'{"location.horizon": "45 deg"}'),
}

# Starts panoptes-utils' own config_server() in its own python and serves
# until stdin closes; prints the server process id.
BASELINE_LAUNCHER = """
import sys
from panoptes.utils.config.server import config_server
process = config_server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]),
                        load_local=False, save_local=False)
print(process.pid, flush=True)
sys.stdin.read()
process.terminate()
process.join()
"""

# Times get_config() in a fresh process: median seconds per call over 5 rounds.
CALLS_SCRIPT = """
import statistics, sys, time
from {module} import get_config
port = int(sys.argv[1])
value = get_config('location.horizon', host='127.0.0.1', port=port)
per_call = []
for _ in range(5):
    started, calls = time.perf_counter(), 0
    while calls < 2000 and time.perf_counter() - started < 1.0:
        get_config('location.horizon', host='127.0.0.1', port=port)
        calls += 1
    per_call.append((time.perf_counter() - started) / calls)
print(statistics.median(per_call), value.unit)
"""

RESULTS = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def wait_for_heartbeat(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.server_is_running('127.0.0.1', port):
            return
        time.sleep(0.1)
    pytest.fail(f'no config server answered on port {port} within {seconds} s')


@pytest.fixture(scope='module')
def servers(tmp_path_factory):
    """Our server and the baseline's, each serving its own copy of testing.yaml."""
    directory = tmp_path_factory.mktemp('config-benchmark')
    ours_file = directory / 'ours.yaml'
    baseline_file = directory / 'baseline.yaml'
    for path in (ours_file, baseline_file):
        shutil.copy(TESTING_YAML, path)
    ours = config_server(str(ours_file), host='127.0.0.1', port=free_port(), load_local=False)
    found = {OURS: (ours.port, ours.pid)}
    baseline = None
    if BASELINE_PYTHON.exists():
        port = free_port()
        baseline = subprocess.Popen(
            [str(BASELINE_PYTHON), '-c', BASELINE_LAUNCHER, str(baseline_file), str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([baseline.stdout], [], [], 120)
        if ready:
            found[BASELINE] = (port, int(baseline.stdout.readline()))
            wait_for_heartbeat(port)
    yield found
    ours.terminate()
    ours.join(10)
    if baseline is not None:
        baseline.stdin.close()
        try:
            baseline.wait(30)
        except subprocess.TimeoutExpired:
            baseline.kill()


@pytest.fixture(scope='module', autouse=True)
def comparison_table(request):
    """Print the figures side by side, with ratios, when the module is done."""
    yield
    if not RESULTS:
        return
    capture = request.config.pluginmanager.get_plugin('capturemanager')
    with capture.global_and_fixture_disabled():
        print('\n' + '\n'.join(format_table()))


def format_table() -> list:
    columns = 'req/s  p50 ms  p99 ms  CPU us/req'
    lines = [f'{"config server":<42} {OURS:>34}   {BASELINE:>34}   ratio',
             f'{"":<42} {columns:>34}   {columns:>34}']
    for scenario, by_server in RESULTS.items():
        if not isinstance(scenario, tuple):
            continue
        cells = []
        for name in (OURS, BASELINE):
            figures = by_server.get(name)
            cells.append(f'{figures["rps"]:>6.0f} {figures["p50_ms"]:>7.2f} {figures["p99_ms"]:>7.2f} '
                         f'{figures["cpu_us_per_request"]:>11.0f}' if figures else '-')
        ratio = ''
        if OURS in by_server and BASELINE in by_server:
            ratio = f'{by_server[OURS]["rps"] / by_server[BASELINE]["rps"]:.1f}x req/s'
        endpoint, clients, mode = scenario
        label = f'/{endpoint}-config, {clients} client(s), {mode}'
        lines.append(f'{label:<42} {cells[0]:>34}   {cells[1]:>34}   {ratio}')
    for label, key in (('get_config() per call, ms', 'get_config'),
                       ('panoptes config get KEY process, ms', 'cli_get')):
        figures = RESULTS.get(key, {})
        ours, baseline = figures.get(OURS), figures.get(BASELINE)
        cells = [f'{value:.3f}' if value else '-' for value in (ours, baseline)]
        ratio = f'{baseline / ours:.1f}x faster' if ours and baseline else ''
        lines.append(f'{label:<42} {cells[0]:>34}   {cells[1]:>34}   {ratio}')
    return lines


def run_load(port: int, clients: int, keep_alive: bool, path: str, body: bytes,
             requests_per_client: int, max_seconds: float) -> dict:
    """Send requests from ``clients`` threads with raw sockets; return latencies and errors."""
    head = (f'POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n'
            f'Content-Length: {len(body)}\r\n' + ('' if keep_alive else 'Connection: close\r\n')
            + '\r\n').encode()
    message = head + body
    latencies, errors = [], []
    deadline = time.monotonic() + max_seconds

    def client_thread():
        sock = None
        for _ in range(requests_per_client):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(message)
                ok = read_response(sock)
                if not keep_alive:
                    sock.close()
                    sock = None
            except OSError:
                ok = False
                sock = None
            latencies.append(time.perf_counter() - started)
            if not ok:
                errors.append(1)
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=client_thread) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 30)
    return {'latencies': latencies, 'errors': len(errors), 'seconds': time.perf_counter() - started}


def read_response(sock) -> bool:
    """Read one HTTP response; True if it is a complete 200."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b'\r\n\r\n')
    length = 0
    for line in head.split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-length':
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        rest += chunk
    return head.startswith((b'HTTP/1.1 200', b'HTTP/1.0 200'))


SCENARIOS = [(endpoint, clients, mode) for endpoint in ('get', 'set') for clients in (1, 8)
             for mode in ('new-connection', 'keep-alive')]


@pytest.mark.benchmark(group='config-server-load')
@pytest.mark.parametrize('endpoint, clients, mode', SCENARIOS)
def test_server_load(benchmark, servers, endpoint, clients, mode):
    """Our server's rounds are timed; the baseline's run in between, so both see the same machine."""
    path, body = BODIES[endpoint]
    rounds = {name: [] for name in servers}

    def one_round(name):
        port, pid = servers[name]
        cpu_before = cpu_seconds(pid)
        result = run_load(port, clients, mode == 'keep-alive', path, body,
                          REQUESTS_PER_CLIENT[clients], MAX_SECONDS)
        result['cpu'] = cpu_seconds(pid) - cpu_before
        rounds[name].append(result)

    def baseline_round():
        if BASELINE in servers:
            one_round(BASELINE)

    benchmark.pedantic(one_round, args=(OURS,), setup=baseline_round, rounds=ROUNDS)
    for name, results in rounds.items():
        figures = summarize(results)
        RESULTS.setdefault((endpoint, clients, mode), {})[name] = figures
        benchmark.extra_info.update({f'{name}: {key}': value for key, value in figures.items()})
        assert figures['errors'] == 0, name


def summarize(rounds: list) -> dict:
    """Median requests/s of the rounds; p50/p99 over every request; server CPU per request."""
    latencies = sorted(latency for result in rounds for latency in result['latencies'])
    return {
        'rps': statistics.median(len(r['latencies']) / r['seconds'] for r in rounds),
        'p50_ms': latencies[len(latencies) // 2] * 1e3,
        'p99_ms': latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
        'cpu_us_per_request': sum(r['cpu'] for r in rounds) / len(latencies) * 1e6,
        'requests': len(latencies),
        'errors': sum(r['errors'] for r in rounds),
    }


@pytest.mark.benchmark(group='config-get_config-call')
def test_get_config_call_in_process(benchmark, servers):
    port = servers[OURS][0]
    value = benchmark.pedantic(client.get_config, args=('location.horizon',),
                               kwargs={'host': '127.0.0.1', 'port': port},
                               rounds=2000, warmup_rounds=50)
    assert value.unit == 'deg'


@pytest.mark.benchmark(group='config-get_config-call')
def test_get_config_call_fresh_process(benchmark, servers):
    """Per-call time of each library's get_config() against its own server, in fresh processes.

    Each round is one process of each library, 0.2.29's first (5 runs of <= 1 s each).
    """
    per_call = {OURS: [], BASELINE: []}

    def measure(server_name):
        python, module = ((sys.executable, 'panoptes_cli.config.client') if server_name == OURS
                          else (str(BASELINE_PYTHON), 'panoptes.utils.config.client'))
        seconds, unit = subprocess.run(
            [python, '-c', CALLS_SCRIPT.format(module=module), str(servers[server_name][0])],
            capture_output=True, text=True, check=True, timeout=120).stdout.split()
        assert unit == 'deg'
        per_call[server_name].append(float(seconds))

    if BASELINE in servers:
        alternate(benchmark, lambda: measure(OURS), lambda: measure(BASELINE), rounds=3,
                  warmup_rounds=0)
    else:
        benchmark.pedantic(measure, args=(OURS,), rounds=3)
    for server_name, values in per_call.items():
        if values:
            RESULTS.setdefault('get_config', {})[server_name] = statistics.median(values) * 1e3
    benchmark.extra_info['ms_per_call'] = RESULTS['get_config'][OURS]


@pytest.mark.benchmark(group='config-cli-get')
def test_cli_get_process(run_process, benchmark, servers):
    """``panoptes config get KEY`` against ``panoptes-config-server get KEY``, whole processes, alternated."""
    env = {'PANOPTES_CONFIG_HOST': '127.0.0.1', 'PANOPTES_CONFIG_PORT': str(servers[OURS][0])}
    versus = None
    if BASELINE in servers:
        versus = [str(BASELINE_PYTHON.parent / 'panoptes-config-server'), '--host', '127.0.0.1',
                  '--port', str(servers[BASELINE][0]), 'get', 'location.horizon']
    their_median = run_process(['panoptes', 'config', 'get', 'location.horizon'], env=env,
                               versus=versus)
    RESULTS.setdefault('cli_get', {})[OURS] = benchmark.stats.stats.median * 1e3
    if their_median is not None:
        RESULTS['cli_get'][BASELINE] = their_median * 1e3
