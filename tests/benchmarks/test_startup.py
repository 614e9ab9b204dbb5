"""Start-up time of whole ``panoptes`` processes, which every cron job pays.

Compare the medians in one run: python -c pass (the floor), panoptes --help,
panoptes time now, and panoptes-utils 0.2.29's panoptes-config-server --help.
"""

import sys

import pytest


@pytest.mark.benchmark(group='startup')
def test_python_floor(run_process):
    run_process([sys.executable, '-c', 'pass'])


@pytest.mark.benchmark(group='startup')
def test_panoptes_help(run_process):
    run_process(['panoptes', '--help'])


@pytest.mark.benchmark(group='startup')
def test_panoptes_time_now(run_process):
    run_process(['panoptes', 'time', 'now'])


@pytest.mark.benchmark(group='startup')
def test_baseline_config_server_help(run_process, baseline_bin):
    run_process([baseline_bin('panoptes-config-server'), '--help'])
