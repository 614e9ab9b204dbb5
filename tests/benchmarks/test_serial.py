"""Serial throughput: ``panoptes serial listen`` at 115200 baud, and the simulator's 9600 baud.

- listen: a pty is fed like a fast device (115200 baud 8N1 = 11520 bytes/s,
  paced in 64-byte USB packets) with 200-byte JSON lines; >= 99.9% of them
  must come out as NDJSON records. The listener's CPU use while streaming
  (from /proc/<pid>/stat, start-up excluded) is reported in extra_info.
- simulate: ``panoptes serial simulate --pty`` is read like a host would; the
  byte rate within each report must be within 5% of 9600 baud (960 bytes/s).

Run: pytest tests/benchmarks/test_serial.py --benchmark-only -s
"""

import json
import os
import queue
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
import tty

import pytest

from benchmarks.conftest import ours_bin

LINE_BYTES = 200
DEVICE_BAUD = 115200
PACKET = 64
LINES_PER_ROUND = 1000
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    with open(f'/proc/{pid}/stat') as stat:
        fields = stat.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def device_line(seq: int) -> bytes:
    """A 200-byte JSON report line (CRLF included), like a chatty board's."""
    head = f'{{"name":"bench_board","seq":{seq},"humidity":42.5,"temperature":[13.01,12.81],'
    pad = LINE_BYTES - len(head) - len('"pad":""}\r\n')
    return (head + '"pad":"' + 'x' * pad + '"}\r\n').encode()


def open_device():
    """Open a pty to play the device; return (master fd, port path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    os.close(slave)
    return master, port


def measure_listener(argv_for_port, lines=LINES_PER_ROUND) -> dict:
    """Feed ``lines`` paced lines to the listener ``argv_for_port(port)``; return the figures.

    The listener must print one JSON object per line on stdout with the
    device's ``seq`` in it (anywhere).
    """
    master, port = open_device()
    listener = subprocess.Popen(argv_for_port(port), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    arrived = queue.Queue()

    def collect():
        for line in listener.stdout:
            arrived.put(line)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        # Until the listener shows it reads, send sync lines (seq -1).
        deadline = time.monotonic() + 30
        while arrived.empty():
            assert time.monotonic() < deadline, 'the listener never started'
            assert listener.poll() is None, listener.stderr.read()
            try:
                os.write(master, device_line(-1))
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(0.2)
        cpu_start, wall_start = cpu_seconds(listener.pid), time.monotonic()

        stream = b''.join(device_line(seq) for seq in range(lines))
        bytes_per_second = DEVICE_BAUD / 10
        for offset in range(0, len(stream), PACKET):
            due = wall_start + offset / bytes_per_second
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            os.write(master, stream[offset:offset + PACKET])
        feed_seconds = time.monotonic() - wall_start

        seen = set()
        idle_deadline = time.monotonic() + 5
        while len(seen) < lines and time.monotonic() < idle_deadline:
            try:
                line = arrived.get(timeout=0.2)
            except queue.Empty:
                continue
            seq = json.loads(line)
            seq = seq.get('seq', seq.get('data', {}).get('seq')) if isinstance(seq, dict) else None
            if seq is not None and seq >= 0:
                seen.add(seq)
        wall = time.monotonic() - wall_start
        cpu = cpu_seconds(listener.pid) - cpu_start
    finally:
        if listener.poll() is None:
            listener.send_signal(signal.SIGINT)
            try:
                listener.wait(timeout=10)
            except subprocess.TimeoutExpired:
                listener.kill()
                listener.wait()
        os.close(master)
    return {
        'lines_sent': lines,
        'lines_emitted': len(seen),
        'fraction_emitted': len(seen) / lines,
        'feed_bytes_per_second': len(stream) / feed_seconds,
        'listener_cpu_seconds': cpu,
        'listener_cpu_percent': 100 * cpu / wall,
        'wall_seconds': wall,
    }


def panoptes_listen(port):
    return [ours_bin('panoptes'), 'serial', 'listen', port, '--baudrate', str(DEVICE_BAUD)]


@pytest.mark.benchmark(group='serial-listen')
def test_listen_keeps_up_at_115200(benchmark):
    results = []
    benchmark.pedantic(lambda: results.append(measure_listener(panoptes_listen)),
                       rounds=3, iterations=1)
    for key in results[0]:
        benchmark.extra_info[f'median_{key}'] = statistics.median(r[key] for r in results)
    print('\nserial listen at 115200 baud:', json.dumps(benchmark.extra_info, indent=1))
    assert all(r['fraction_emitted'] >= 0.999 for r in results), results
    # The feed really was at 115200 baud (within 2%).
    assert all(abs(r['feed_bytes_per_second'] / 11520 - 1) < 0.02 for r in results), results


def report_rates(read_fd, reports: int, deadline: float = 30.0) -> list[float]:
    """Read ``reports`` whole reports; return each one's byte rate in bytes/s.

    A report's rate is the bytes before its last chunk divided by the time
    from its first chunk's arrival to its last chunk's arrival.
    """
    rates = []
    current = []          # (arrival time, bytes) of the report being received
    started = False       # skip the report in progress when we began
    end = time.monotonic() + deadline
    while len(rates) < reports:
        assert time.monotonic() < end, f'only {len(rates)} reports in {deadline} s'
        ready, _, _ = select.select([read_fd], [], [], 0.5)
        if not ready:
            continue
        data = os.read(read_fd, 4096)
        now = time.monotonic()
        if not started:
            if b'\n' in data:
                started = True
            continue
        current.append((now, len(data)))
        if data.endswith(b'\n'):
            if len(current) >= 3:
                sent = sum(size for _, size in current[:-1])
                rates.append(sent / (current[-1][0] - current[0][0]))
            current = []
    return rates


@pytest.mark.benchmark(group='serial-simulate')
def test_simulator_rate_is_9600_baud(benchmark):
    simulator = subprocess.Popen([ours_bin('panoptes'), 'serial', 'simulate', '--pty'],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = json.loads(simulator.stdout.readline())['port']
        fd = os.open(port, os.O_RDONLY | os.O_NOCTTY)
        try:
            rates = []
            cpu_start, wall_start = cpu_seconds(simulator.pid), time.monotonic()
            benchmark.pedantic(lambda: rates.extend(report_rates(fd, 2)), rounds=3, iterations=1)
            cpu_percent = 100 * (cpu_seconds(simulator.pid) - cpu_start) / (
                time.monotonic() - wall_start)
        finally:
            os.close(fd)
    finally:
        simulator.send_signal(signal.SIGINT)
        simulator.wait(timeout=10)
    bauds = [rate * 10 for rate in rates]
    benchmark.extra_info['median_baud'] = statistics.median(bauds)
    benchmark.extra_info['min_baud'] = min(bauds)
    benchmark.extra_info['max_baud'] = max(bauds)
    benchmark.extra_info['reports'] = len(bauds)
    benchmark.extra_info['simulator_cpu_percent'] = cpu_percent
    print('\nserial simulate --pty:', json.dumps(benchmark.extra_info, indent=1))
    assert abs(statistics.median(bauds) / 9600 - 1) <= 0.05, bauds
    assert all(abs(baud / 9600 - 1) <= 0.05 for baud in bauds), bauds


if __name__ == '__main__':
    # For side-by-side runs: python tests/benchmarks/test_serial.py LISTENER-ARGV...
    # where the word PORT in the arguments is replaced by the pty's path.
    template = sys.argv[1:]
    print(json.dumps(measure_listener(
        lambda port: [port if arg == 'PORT' else arg for arg in template])))
