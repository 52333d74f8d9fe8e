# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule/_shared/templates/haproxy.cfg.j2 rendered with jinja2 as Ansible's template module does
(trim_blocks), with and without its optional switches; `haproxy -c` on each where HAProxy is installed."""

from __future__ import annotations

import os
import pathlib
import pwd
import subprocess

import jinja2
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "molecule" / "_shared" / "templates"
HAPROXY = "/usr/sbin/haproxy"

# What the template rendered before the switches existed, through Ansible's template module, for the
# inventory in render() below. With the switches unset or false the rendering must stay byte-identical.
UNSET = """\
# Ansible managed
global
    log stdout format raw local0 info
    stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
    stats socket ipv4@0.0.0.0:9999 level admin
    stats timeout 30s
    user haproxy
    group haproxy

defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout queue 30s

frontend models_in
    bind *:8080
    default_backend models

backend models
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2 init-addr last,libc,none
    server fu-m1 fu-m1:8000 check
    server srv-two fu-m2:8001 check
"""

COOKIE = UNSET.replace(
    "    balance leastconn\n", "    balance leastconn\n    cookie SERVERID insert indirect nocache\n").replace(
    "fu-m1:8000 check\n", "fu-m1:8000 check cookie fu-m1\n").replace(
    "fu-m2:8001 check\n", "fu-m2:8001 check cookie srv-two\n")

STATE_FILE = UNSET.replace(
    "    group haproxy\n", "    group haproxy\n    server-state-file /var/lib/haproxy/server-state\n").replace(
    "    timeout queue 30s\n", "    timeout queue 30s\n    load-server-state-from-file global\n")

BOTH = COOKIE.replace(
    "    group haproxy\n", "    group haproxy\n    server-state-file /var/lib/haproxy/server-state\n").replace(
    "    timeout queue 30s\n", "    timeout queue 30s\n    load-server-state-from-file global\n")


def ansible_bool(value):
    """Ansible's `bool` filter, for the values an inventory or -e gives."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y", "t")


def render(**variables):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["bool"] = ansible_bool
    context = {
        "ansible_managed": "Ansible managed",
        "__fleet_backend": "models",
        "groups": {"load_balancers": ["fu-lb"], "model_servers": ["fu-m1", "fu-m2"]},
        "hostvars": {
            "fu-lb": {},
            "fu-m1": {},
            "fu-m2": {"fleet_haproxy_server": "srv-two", "fleet_instances": [{"name": "llama", "port": 8001}]},
        },
    }
    context.update(variables)
    return env.get_template("haproxy.cfg.j2").render(**context)


@pytest.mark.parametrize("variables", [
    {},
    {"fleet_haproxy_cookie": False, "fleet_haproxy_server_state_file": False},
    {"fleet_haproxy_cookie": "false", "fleet_haproxy_server_state_file": "no"},
])
def test_unset_or_false_renders_as_before(variables):
    assert render(**variables) == UNSET


@pytest.mark.parametrize("variables, expected", [
    ({"fleet_haproxy_cookie": True}, COOKIE),
    ({"fleet_haproxy_cookie": "yes"}, COOKIE),
    ({"fleet_haproxy_server_state_file": True}, STATE_FILE),
    ({"fleet_haproxy_server_state_file": "true"}, STATE_FILE),
    ({"fleet_haproxy_cookie": True, "fleet_haproxy_server_state_file": True}, BOTH),
])
def test_switches_add_only_their_lines(variables, expected):
    assert render(**variables) == expected


def sections(text):
    """{section header: [its lines]}, e.g. "global", "backend models"."""
    found, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            current = line
            found[current] = []
        elif current and line.strip():
            found[current].append(line.strip())
    return found


def test_directives_sit_in_the_sections_haproxy_wants():
    parts = sections(BOTH)
    assert "server-state-file /var/lib/haproxy/server-state" in parts["global"]
    assert "load-server-state-from-file global" in parts["defaults"]
    backend = parts["backend models"]
    assert "cookie SERVERID insert indirect nocache" in backend
    servers = [line for line in backend if line.startswith("server ")]
    assert servers and all(line.split()[-2:] == ["cookie", line.split()[1]] for line in servers)


def _haproxy_usable():
    if not os.access(HAPROXY, os.X_OK):
        return False
    try:
        pwd.getpwnam("haproxy")  # the configuration's `user haproxy` must exist for the check
    except KeyError:
        return False
    return True


@pytest.mark.skipif(not _haproxy_usable(), reason="no %s (or no haproxy user) here" % HAPROXY)
@pytest.mark.parametrize("text", [UNSET, COOKIE, STATE_FILE, BOTH], ids=["unset", "cookie", "state-file", "both"])
def test_haproxy_accepts_the_rendering(text, tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    result = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Expected here, off the fleet: its host names do not resolve, and no state has been saved yet.
    expected = ("could not resolve address", "Can't open global server state file")
    warnings = [line for line in output.splitlines()
                if ("[WARNING]" in line or "[ALERT]" in line) and not any(known in line for known in expected)]
    assert warnings == [], output


def render_routed():
    """Three models, each host in its model's backend, routed by X-Model-Version through the map file."""
    return render(
        fleet_haproxy_routes={"chat-v3": "chat", "embed-v1": "embed"},
        groups={"load_balancers": ["rt-lb"], "model_servers": ["rt-a1", "rt-b1", "rt-b2"]},
        hostvars={"rt-lb": {}, "rt-a1": {"fleet_backend": "chat"}, "rt-b1": {"fleet_backend": "embed"},
                  "rt-b2": {"fleet_backend": "embed"}})


def test_routes_give_each_model_its_backend_and_a_map_lookup():
    parts = sections(render_routed())
    assert "use_backend %[req.hdr(X-Model-Version),lower,map(/etc/haproxy/model-routes.map,no_route)]" in parts[
        "frontend models_in"]
    assert [line.split()[1] for line in parts["backend chat"] if line.startswith("server ")] == ["rt-a1"]
    assert [line.split()[1] for line in parts["backend embed"] if line.startswith("server ")] == ["rt-b1", "rt-b2"]
    assert "backend models" not in parts and "backend no_route" in parts


@pytest.mark.skipif(not _haproxy_usable(), reason="no %s (or no haproxy user) here" % HAPROXY)
def test_haproxy_accepts_the_routed_rendering(tmp_path):
    text = render_routed().replace("/etc/haproxy/model-routes.map", str(tmp_path / "model-routes.map"))
    (tmp_path / "model-routes.map").write_text("chat-v3 chat\nembed-v1 embed\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    result = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
