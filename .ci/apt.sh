# Sourced by the .ci install scripts: one way to install the Debian packages a make target
# needs.
#
# apt_install NEED PACKAGE...: as root, installs the packages (quietly, no recommends);
# otherwise prints "NEED: sudo apt-get install PACKAGE..." and exits 1, so that a developer
# without root learns what to install instead of getting a failed test.
apt_install() {
    local need="$1"
    shift
    if [[ "$(id -u)" != 0 ]]; then
        echo "$need: sudo apt-get install $*" >&2
        exit 1
    fi
    echo "$(basename "$0" .sh): apt-get install $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
