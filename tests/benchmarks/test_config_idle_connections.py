"""Get latency while 500 idle connections are held open, ours against panoptes-utils 0.2.29.

Issue 12: idle or slow connections must not starve the config server; with
500 idle connections open a get should still answer within 50 ms. Each
server gets the same 500 idle sockets, then 30 gets on new connections (as
``panoptes config get`` makes them), each allowed 2 s; the median latency and
the number that got no answer are printed side by side.

Run ``pytest tests/benchmarks/test_config_idle_connections.py --benchmark-only``.
"""

import http.client
import socket
import statistics
import time

import pytest

from .test_config import BASELINE, OURS, servers  # noqa: F401 - the fixture, shared

IDLE = 500
GETS = 30
ANSWER_WITHIN = 2.0


def timed_get(port: int) -> float | None:
    """Seconds one get took, or None if it got no answer within ANSWER_WITHIN."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=ANSWER_WITHIN)
    try:
        connection.request('POST', '/get-config', b'{"key": "location.horizon"}',
                           {'Content-Type': 'application/json'})
        connection.getresponse().read()
    except OSError:
        return None
    finally:
        connection.close()
    return time.perf_counter() - started


def with_idle_connections(port: int, measure):
    sockets = []
    try:
        for _ in range(IDLE):
            sock = socket.socket()
            sock.settimeout(ANSWER_WITHIN)
            try:
                sock.connect(('127.0.0.1', port))
            except OSError:
                sock.close()
                break
            sockets.append(sock)
        time.sleep(0.2)
        return len(sockets), measure()
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.benchmark(group='config-idle-connections')
def test_get_with_500_idle_connections(benchmark, servers):  # noqa: F811
    figures = {}
    port = servers[OURS][0]

    def ours():
        return benchmark.pedantic(timed_get, args=(port,), rounds=GETS, warmup_rounds=2)

    opened, _ = with_idle_connections(port, ours)
    figures[OURS] = (opened, benchmark.stats.stats.median * 1e3, 0)
    if BASELINE in servers:
        baseline_port = servers[BASELINE][0]
        opened, results = with_idle_connections(
            baseline_port, lambda: [timed_get(baseline_port) for _ in range(5)])
        answered = [seconds for seconds in results if seconds is not None]
        median = statistics.median(answered) * 1e3 if answered else float('nan')
        figures[BASELINE] = (opened, median, len(results) - len(answered))
    benchmark.extra_info.update({f'{name}: median_ms': value[1] for name, value in figures.items()})
    lines = [f'\nget latency with {IDLE} idle connections open (each get allowed {ANSWER_WITHIN:g} s)']
    for name, (opened, median, unanswered) in figures.items():
        lines.append(f'  {name:24} idle open {opened:4}  median {median:8.1f} ms  '
                     f'unanswered {unanswered}')
    print('\n'.join(lines))
