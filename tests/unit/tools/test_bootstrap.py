"""tools/bootstrap.sh ends bad set-ups with one clear sentence, not a stack trace."""

from __future__ import annotations

import os
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[3]
BOOTSTRAP = REPO / 'tools' / 'bootstrap.sh'


# The only programs the docker step may find: no docker, dockerd or apt-get unless a test adds one.
TOOLS = ('mkdir', 'dirname', 'grep', 'tail', 'seq', 'sleep', 'cat', 'pgrep')


def fake_bin(tmp_path, name, body):
    path = tmp_path / 'bin' / name
    path.parent.mkdir(exist_ok=True)
    path.write_text('#!/bin/sh\n' + body + '\n')
    path.chmod(0o755)
    return path


def run_docker_step(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = subprocess.run(['sh', '-c', 'command -v ' + tool], capture_output=True, text=True, check=False).stdout.strip()
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    env = dict(os.environ, PATH=str(bin_dir), MODELOPS_LOG_DIR=str(tmp_path / 'logs'))
    return subprocess.run(['/bin/bash', str(BOOTSTRAP), 'docker'], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_no_root_and_no_docker(tmp_path):
    fake_bin(tmp_path, 'id', 'echo 1000')
    fake_bin(tmp_path, 'timeout', 'shift; exec "$@"')
    # No docker and no dockerd on this PATH.
    result = run_docker_step(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ['bootstrap: Docker is not installed and this is not root: install Docker '
                     '(or run as root so docker.io can be installed), then re-run.']
    assert 'Traceback' not in result.stdout + result.stderr


def test_daemon_refusing_without_root(tmp_path):
    fake_bin(tmp_path, 'id', 'case "$1" in -un) echo builder ;; *) echo 1000 ;; esac')
    fake_bin(tmp_path, 'timeout', 'shift; exec "$@"')
    fake_bin(tmp_path, 'dockerd', 'exit 1')
    fake_bin(tmp_path, 'docker', 'echo "permission denied while trying to connect to the Docker daemon socket at '
                                 'unix:///var/run/docker.sock" >&2; exit 1')
    result = run_docker_step(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith('bootstrap: the Docker daemon does not answer (permission denied')
    assert 'add builder to the docker group' in lines[0]
