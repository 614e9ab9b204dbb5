"""Start-up time of whole ``panoptes`` processes, which every cron job pays.

Compare the medians in one run: python -c pass (the floor), panoptes --help,
panoptes time now; and panoptes --help against panoptes-utils 0.2.29's
panoptes-config-server --help, alternated round by round (the baseline's median
and the ratio are in that benchmark's extra_info).
"""

import sys

import pytest


@pytest.mark.benchmark(group='startup')
def test_python_floor(run_process):
    run_process([sys.executable, '-c', 'pass'])


@pytest.mark.benchmark(group='startup')
def test_panoptes_time_now(run_process):
    run_process(['panoptes', 'time', 'now'])


@pytest.mark.benchmark(group='startup')
def test_panoptes_help_against_baseline(run_process, baseline_bin):
    run_process(['panoptes', '--help'], versus=[baseline_bin('panoptes-config-server'), '--help'])
