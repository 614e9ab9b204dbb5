#!/usr/bin/env bash
# Install panoptes-cli and the programs it drives, then optionally run something.
#
#   ./install.sh          install only
#   ./install.sh run      install, then serve the bundled default config (panoptes config run)
#   ./install.sh test     install with the test extras, then run the whole test suite
#
# Debian packages (astrometry.net, cfitsio tools, dcraw, exiftool, ffmpeg) are installed when
# running as root or with sudo; packages already present are skipped. The Python package is
# installed (editable, from this checkout) into the active virtualenv; with none active and a
# system Python that refuses pip (PEP 668), a .venv is made here and used.
set -euo pipefail
cd "$(dirname "$0")"

action="${1:-install}"
case "$action" in install|run|test) ;; *) echo "usage: $0 [install|run|test]" >&2; exit 2 ;; esac

mapfile -t debian_packages < <(awk '!/^#/ && NF {print $1}' panoptes_cli/data/debian-packages.txt)
# The tests also regenerate man pages (help2man, man), run the README's examples (jq), start
# a throwaway PostgreSQL server (postgresql), and build and run the Docker image without a
# Docker engine (buildah; debootstrap makes a stand-in for the image's base where no
# container registry can be reached).
[ "$action" = test ] && debian_packages+=(help2man man-db jq postgresql buildah debootstrap)

install_debian_packages() {
    command -v dpkg-query >/dev/null 2>&1 || { echo "install.sh: not Debian/Ubuntu; install ${debian_packages[*]} yourself" >&2; return 0; }
    local missing=()
    for package in "${debian_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && { echo "install.sh: Debian packages already installed" >&2; return 0; }
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
            echo "install.sh: not root and no sudo; skipping Debian packages: ${missing[*]}" >&2; return 0; fi
    fi
    echo "install.sh: installing Debian packages: ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

choose_python() {
    if [ -n "${VIRTUAL_ENV:-}" ]; then python=python; return; fi
    python=$(command -v python3 || command -v python)
    if "$python" -c 'import sys, sysconfig, os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
        [ -x .venv/bin/python ] || "$python" -m venv .venv
        python=.venv/bin/python
        export PATH="$PWD/.venv/bin:$PATH"
        echo "install.sh: using the virtualenv .venv (activate it with: . .venv/bin/activate)" >&2
    fi
}

install_debian_packages
choose_python
extras=""
[ "$action" = test ] && extras="[test]"
"$python" -m pip install --quiet --disable-pip-version-check -e ".${extras}" >&2

case "$action" in
    run)  exec "$python" -m panoptes_cli config run ;;
    test) exec "$python" -m pytest ;;
    *)    echo "install.sh: done; try: panoptes --help" >&2 ;;
esac
