#!/usr/bin/env bash
# Idempotent set-up for `make demo` and `make test` on a Debian machine:
#   1. a virtualenv (.venv) with the pinned tools of requirements/*.txt;
#   2. a Docker engine that answers (installs Debian's docker.io and starts dockerd when root);
#   3. the systemd base image for the test fleet (tests/fleet/image/build.sh, cached by recipe hash);
#   4. the offline stand-in for ansible-test's pip bootstrap script;
#   5. a minimal controller (.build/core-controller): ansible-core alone in a virtualenv, and a
#      collections path with this collection and the collections requirements.yml declares only.
# A re-run with nothing to do takes seconds. Every failure ends with one sentence saying what to do.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
log_dir=${MODELOPS_LOG_DIR:-$repo/.build/logs}
mkdir -p "$log_dir"

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

apt_install() {
  is_root || return 1
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing Debian packages: $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$log_dir/apt.log" 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log_dir/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$log_dir/apt.log" 2>&1 || return 1
  fi
}

ensure_venv() {
  local stamp="$venv/.modelops-requirements" want
  want=$(cat "$repo"/requirements/*.txt | sha256sum | cut -c1-16)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 || apt_install python3 python3-venv || die "python3 is missing; install python3 and python3-venv, then re-run."
  if [ ! -x "$venv/bin/python" ]; then
    say "creating virtualenv $venv"
    if ! "$python" -m venv "$venv" >"$log_dir/venv.log" 2>&1; then
      rm -rf "$venv"
      if ! apt_install python3-venv || ! "$python" -m venv "$venv" >>"$log_dir/venv.log" 2>&1; then
        die "could not create a virtualenv with $python (see $log_dir/venv.log); install python3-venv and re-run."
      fi
    fi
  fi
  say "installing pinned tools into $venv (requirements/*.txt)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/requirements/dev.txt" >"$log_dir/pip.log" 2>&1 \
    || die "pip could not install requirements/dev.txt (see $log_dir/pip.log); check that PyPI is reachable."
  echo "$want" >"$stamp"
}

ensure_core_controller() {
  # ansible-core and nothing else, as on a slim AWX execution environment. The collections come from
  # the full venv's ansible package (no Galaxy access here), only those requirements.yml names.
  local core=$repo/.build/core-controller want name src
  want=$( (cat "$repo/requirements/core-controller.txt" "$repo/requirements.yml"; ls -d "$venv"/lib/python3*/site-packages/ansible-*.dist-info) | sha256sum | cut -c1-16)
  if [ -x "$core/venv/bin/ansible-playbook" ] && [ "$(cat "$core/.stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "building the minimal controller in $core (ansible-core and the declared collections only)"
  rm -rf "$core"
  mkdir -p "$core/collections/ansible_collections/modelops"
  "${PYTHON:-python3}" -m venv "$core/venv" >"$log_dir/core-venv.log" 2>&1 \
    || die "could not create $core/venv (see $log_dir/core-venv.log); install python3-venv and re-run."
  "$core/venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/requirements/core-controller.txt" \
    >>"$log_dir/core-venv.log" 2>&1 || die "pip could not install requirements/core-controller.txt (see $log_dir/core-venv.log)."
  ln -sfn "$repo" "$core/collections/ansible_collections/modelops/shutdown"
  while read -r name; do
    [ "$name" = modelops.shutdown ] && continue
    src=
    for candidate in "$venv"/lib/python3*/site-packages/ansible_collections/"${name%%.*}"/"${name#*.}"; do
      [ -d "$candidate" ] && src=$candidate && break
    done
    [ -n "$src" ] || die "requirements.yml names $name, which the venv's ansible package does not carry."
    mkdir -p "$core/collections/ansible_collections/${name%%.*}"
    cp -a "$src" "$core/collections/ansible_collections/${name%%.*}/"
  done < <(sed -n 's/^ *- *name: *\([a-z0-9_][a-z0-9_]*\.[a-z0-9_][a-z0-9_]*\).*/\1/p' "$repo/requirements.yml")
  echo "$want" >"$core/.stamp"
}

docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

ensure_docker() {
  docker_answers && return 0
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    is_root || die "Docker is not installed and this is not root: install Docker (or run as root so docker.io can be installed), then re-run."
    apt_install docker.io || die "installing docker.io failed (see $log_dir/apt.log); install Docker by hand and re-run."
    docker_answers && return 0
  fi
  if ! is_root; then
    die "the Docker daemon does not answer ($( (docker info 2>&1 || true) | grep -m1 -iE 'error|cannot|denied' || echo 'no reply')); start it (systemctl start docker) or add $(id -un) to the docker group, then re-run."
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $log_dir/dockerd.log)"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl start docker >/dev/null 2>&1 || true
    fi
    if ! docker_answers; then
      setsid nohup dockerd >"$log_dir/dockerd.log" 2>&1 </dev/null &
    fi
  fi
  for _ in $(seq 1 60); do
    docker_answers && return 0
    sleep 0.5
  done
  die "the Docker daemon does not answer after 30 s: $(tail -n 1 "$log_dir/dockerd.log" 2>/dev/null || docker info 2>&1 | tail -n 1); fix dockerd and re-run."
}

ensure_image() {
  if [ -z "${MODELOPS_FLEET_IMAGE:-}" ] && ! command -v debootstrap >/dev/null 2>&1; then
    apt_install debootstrap || die "debootstrap is missing and could not be installed; install it or set MODELOPS_FLEET_IMAGE to a systemd image."
  fi
  local ref
  ref=$(bash "$repo/tests/fleet/image/build.sh") || die "the base image could not be built (messages above)."
  echo "$ref" >"$repo/.build/fleet-image"
}

ensure_get_pip() {
  # ansible-test's sanity venvs bootstrap pip from a script it cannot download here.
  local version
  version=$(grep -o "pip='[0-9.]*'" "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n 1 | tr -dc '0-9.')
  [ -n "$version" ] || die "could not find ansible-test's pip version in $venv; re-create the virtualenv (rm -rf $venv) and re-run."
  local cache=~/.ansible/test/cache/get_pip_${version//./_}.py
  mkdir -p "$(dirname "$cache")"
  cmp -s "$repo/tools/get_pip_standin.py" "$cache" 2>/dev/null || install -m 0644 "$repo/tools/get_pip_standin.py" "$cache"
}

ensure_tools() {
  # The shellcheck tool backs ansible-test's shellcheck sanity test, which is skipped without it.
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck || say "shellcheck is not installed; ansible-test will skip its shellcheck test."
  # A real HAProxy for the runtime-API unit tests (they skip without it).
  command -v haproxy >/dev/null 2>&1 || apt_install haproxy || say "haproxy is not installed; its unit tests will be skipped."
  # Headless Chromium renders the HTML reports in their tests (they skip without it) and for the README screenshot.
  command -v chromium >/dev/null 2>&1 || apt_install chromium || say "chromium is not installed; the HTML report's browser tests will be skipped."
}

what=${1:-all}
case "$what" in
  venv) ensure_venv ;;
  docker) ensure_docker ;;
  image) ensure_docker; ensure_image ;;
  core) ensure_core_controller ;;
  all) ensure_venv; ensure_get_pip; ensure_tools; ensure_core_controller; ensure_docker; ensure_image ;;
  *) die "unknown step '$what' (expected venv, core, docker, image or all)" ;;
esac
