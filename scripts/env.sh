# Build environment for univla_ros (source it): tch finds libtorch in ./.venv's torch wheel.
# The binaries carry an rpath to that libtorch (see build.rs), so running them needs nothing else.
_univla_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$_univla_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset _univla_root
