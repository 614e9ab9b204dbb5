"""panoptes_cli.images.plot: figures on their own Agg canvas, no global matplotlib state."""

import json
import subprocess
import sys

import numpy as np
import pytest

from panoptes_cli.images import plot


def test_palette_is_a_marked_copy():
    from matplotlib import colormaps

    palette = plot.get_palette('viridis')
    assert palette.name == 'viridis'
    assert tuple(palette.get_bad()) == (0.0, 0.5, 0.0, 1.0)
    # The registered colormap is unchanged.
    assert tuple(colormaps['viridis'].get_bad()) != tuple(palette.get_bad())


@pytest.mark.slow
def test_colorbar_orientations():
    fig = plot._figure()
    ax = fig.add_subplot()
    image = ax.imshow(np.arange(16.0).reshape(4, 4))
    horizontal = plot.add_colorbar(image, orientation='horizontal')
    assert horizontal.orientation == 'horizontal'
    fig.canvas.draw()  # the divider places the colorbar at draw time
    assert horizontal.ax.get_position().y1 <= ax.get_position().y0 + 1e-6


@pytest.mark.slow
def test_pixel_grid_without_labels():
    ax = plot._figure().add_subplot()
    ax.imshow(np.zeros((3, 3)))
    plot.add_pixel_grid(ax, 3, 3, show_axis_labels=False)
    assert list(ax.get_xticks()) == []
    assert [label.get_text() for label in ax.get_xticklabels(minor=True)] == [''] * 4


@pytest.mark.slow
def test_show_stamps_from_cubes_saves_a_png(tmp_path):
    rng = np.random.default_rng(0)
    cubes = [rng.normal(100, 5, (4, 121)), rng.normal(100, 5, (4, 121)),
             rng.normal(100, 5, (4, 121))]
    save_name = tmp_path / 'stamps.png'
    fig = plot.show_stamps(cubes, frame_idx=2, stamp_size=11, show_residual=True,
                           stretch='log', save_name=save_name, show_max=True,
                           show_pixel_grid=True)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:3] == ['Target', 'Comparison 1', 'Comparison 2']
    assert titles[3].startswith('Residual RMS: ')
    assert save_name.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_show_stamps_needs_a_stamp():
    with pytest.raises(ValueError):
        plot.show_stamps([])


@pytest.mark.slow
def test_animation_has_a_frame_per_stamp(tmp_path):
    from PIL import Image

    ani = plot.animate_stamp(np.random.default_rng(1).normal(size=(4, 8, 8)))
    gif = tmp_path / 'stamp.gif'
    ani.save(gif, writer='pillow')
    with Image.open(gif) as image:
        assert image.n_frames == 4


@pytest.mark.slow
def test_plots_leave_pyplot_and_the_backend_alone():
    # dict.items reads the settings as stored: rcParams' own lookups would resolve
    # the backend, which imports pyplot.
    code = (
        'import json, sys, matplotlib\n'
        'settings = dict(dict.items(matplotlib.rcParams))\n'
        'import numpy as np\n'
        'from panoptes_cli.images import plot\n'
        'plot.show_stamps([np.ones((11, 11)), np.zeros((11, 11))])\n'
        'pyplot = "matplotlib.pyplot" in sys.modules\n'
        'changed = sorted(k for k, v in dict.items(matplotlib.rcParams) if settings.get(k) != v)\n'
        'print(json.dumps({"pyplot": pyplot, "changed": changed}))\n'
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout) == {'pyplot': False, 'changed': []}
