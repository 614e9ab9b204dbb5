"""Many processes writing one collection at once: every record stored, whole, readable."""

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from panoptes_cli.database import PanDB

PROCESSES = 8
INSERTS = 2000

WRITER = textwrap.dedent("""
    import sys
    from panoptes_cli.database import PanDB

    db_type, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db = PanDB(db_type=db_type, db_name='panoptes_testing')
    sys.stdin.readline()  # start together
    for i in range(count):
        if i % 100 == 0:
            db.insert_current('weather', {'worker': worker, 'i': i, 'note': 'x' * 100})
        else:
            db.insert('weather', {'worker': worker, 'i': i, 'note': 'x' * 100})
""")


@pytest.mark.slow
@pytest.mark.parametrize('db_type', ['file', 'sqlite'])
def test_many_processes_one_collection(db_type, isolated_env, logged_warnings):
    db = PanDB(db_type=db_type, db_name='panoptes_testing')
    writers = [subprocess.Popen([sys.executable, '-c', WRITER, db_type, str(n), str(INSERTS)],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(PROCESSES)]
    for writer in writers:
        writer.stdin.write('go\n')
        writer.stdin.flush()

    # Read while they write: a reader only ever sees whole records.
    # An assert inside the thread would only warn: collect what it sees, assert below.
    reads = []
    partial_currents = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            reads.append(sum(1 for _ in db.find('weather', parse=False)))
            current = db.get_current('weather', parse=False)
            if current is not None and set(current) != {'_id', 'type', 'date', 'data'}:
                partial_currents.append(current)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for writer in writers:
            _, stderr = writer.communicate(timeout=240)
            assert writer.returncode == 0, stderr
    finally:
        stop.set()
        reader.join()

    records = list(db.find('weather', parse=False))
    assert len(records) == PROCESSES * INSERTS
    assert len({r['_id'] for r in records}) == PROCESSES * INSERTS
    for worker in range(PROCESSES):
        mine = sorted(r['data']['i'] for r in records if r['data']['worker'] == worker)
        assert mine == list(range(INSERTS))
    assert db.get_current('weather')['data']['i'] == INSERTS - 100
    assert reads and reads == sorted(reads)
    assert partial_currents == []
    assert logged_warnings == []
    if db_type == 'file':
        lines = Path(db.storage_dir, 'weather.json').read_text().split('\n')
        assert lines[-1] == ''
        assert all(json.loads(line)['type'] == 'weather' for line in lines[:-1])
        assert not list(Path(db.storage_dir).glob('*.tmp'))
