# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health-check settings of HAProxy servers, from the configuration file, and how long HAProxy takes to
notice that a server went away.

Private to this collection; nothing here opens a file or a socket (callers pass the text in).

What is read, per C(server <name> <address> [params]) line of a C(backend) or C(listen) section:
C(check) / C(no-check), C(inter), C(fastinter), C(downinter), C(fall) and C(rise), each from the server
line, else from the section's C(default-server) lines, else from the C(default-server) lines of the
C(defaults) section the proxy inherits from (the last one before it, or the named one of C(from <name>)),
else HAProxy's defaults (C(inter 2s), C(fall 3), C(rise 2); C(fastinter) and C(downinter) default to
C(inter)). A time without a unit is in milliseconds, as HAProxy reads it.

Detection time (C(detection_seconds)), the longest a stopped server stays C(UP) in HAProxy:
C(inter + (fall - 1) * fastinter). The first check after the server stopped comes at most C(inter) after
the stop (a check that passed just before it), and from the first failure on HAProxy checks every
C(fastinter) until C(fall) consecutive failures mark it C(DOWN). Without C(fastinter) that is
C(inter * fall). A check to a closed port fails at once (connection refused), so the check's own timeout
is not added; C(spread-checks) jitter is not counted either. V(null) when the server has no C(check): HAProxy
then never marks it C(DOWN).
"""

from __future__ import annotations

import re

DEFAULT_INTER = 2.0
DEFAULT_FALL = 3
DEFAULT_RISE = 2

SECTIONS = ('global', 'defaults', 'frontend', 'backend', 'listen', 'peers', 'resolvers', 'userlist', 'program',
            'cache', 'ring', 'mailers', 'http-errors')
PROXY_SECTIONS = ('backend', 'listen')

_TIME = re.compile(r'^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h|d)?$')
_TIME_UNITS = {'us': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0, 'h': 3600.0, 'd': 86400.0, None: 1e-3}
_TIME_KEYS = ('inter', 'fastinter', 'downinter')
_INT_KEYS = ('fall', 'rise')


class HAProxyConfigError(Exception):
    """A value in the configuration could not be read."""


def parse_time(value):
    """Seconds (float) from an HAProxy time (C(500ms), C(2s), C(2000) = 2000 ms). Raises C(HAProxyConfigError)."""
    match = _TIME.match(value or '')
    if not match:
        raise HAProxyConfigError('%r is not an HAProxy time (a number with us, ms, s, m, h or d; no unit is ms)' % (value,))
    return round(float(match.group(1)) * _TIME_UNITS[match.group(2)], 6)


def _settings(words, line_no, where):
    """The check settings of one C(server) or C(default-server) line's parameters."""
    found = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word == 'check':
            found['check'] = True
        elif word == 'no-check':
            found['check'] = False
        elif word in _TIME_KEYS or word in _INT_KEYS:
            if index + 1 >= len(words):
                raise HAProxyConfigError('line %d (%s): %s has no value' % (line_no, where, word))
            value = words[index + 1]
            if word in _TIME_KEYS:
                try:
                    found[word] = parse_time(value)
                except HAProxyConfigError as exc:
                    raise HAProxyConfigError('line %d (%s): %s %s' % (line_no, where, word, exc))
            else:
                if not re.match(r'^[0-9]+$', value) or int(value) < 1:
                    raise HAProxyConfigError('line %d (%s): %s %r is not a count of at least 1' % (line_no, where, word, value))
                found[word] = int(value)
            index += 1
        index += 1
    return found


def _words(raw):
    return raw.split('#', 1)[0].split()


def _empty_defaults():
    return {'settings': {}, 'lines': [], 'balance': None, 'hash_type': None}


def _inherit(base, **extra):
    section = {'settings': dict(base['settings']), 'lines': list(base['lines']), 'balance': base['balance'],
               'hash_type': base['hash_type']}
    section.update(extra)
    return section


def _proxies(text):
    """C({name: proxy}) for every C(backend) and C(listen) section: its servers' check settings and its
    C(balance) / C(hash-type), each inherited from the C(defaults) section it uses unless it sets its own."""
    defaults_named = {}
    current_defaults = _empty_defaults()
    proxies = {}
    section = None
    proxy = None
    for line_no, raw in enumerate(text.splitlines(), 1):
        words = _words(raw)
        if not words:
            continue
        if words[0] in SECTIONS:
            section = words[0]
            proxy = None
            if section == 'defaults':
                name = words[1] if len(words) > 1 and words[1] != 'from' else None
                parent = current_defaults
                if 'from' in words[1:]:
                    parent = defaults_named.get(words[words.index('from') + 1]) if words.index('from') + 1 < len(words) else None
                    parent = parent or _empty_defaults()
                current_defaults = _inherit(parent)
                if name:
                    defaults_named[name] = current_defaults
            elif section in PROXY_SECTIONS and len(words) > 1:
                base = current_defaults
                if 'from' in words[2:]:
                    at = words.index('from', 2) + 1
                    base = defaults_named.get(words[at]) if at < len(words) else None
                    if base is None:
                        raise HAProxyConfigError('line %d: %s %s inherits from defaults %s, which comes nowhere before it'
                                                 % (line_no, section, words[1], words[at] if at < len(words) else '(none)'))
                proxy = _inherit(base, name=words[1], servers={})
                proxies[words[1]] = proxy
            continue
        target = current_defaults if section == 'defaults' else proxy
        if target is None:
            continue
        if words[0] == 'default-server':
            where = 'defaults default-server' if target is current_defaults else '%s default-server' % proxy['name']
            target['settings'].update(_settings(words[1:], line_no, where))
            target['lines'].append(line_no)
        elif words[0] == 'balance' and len(words) > 1:
            # hdr(name), url_param name, ...: the algorithm is the first word, up to a parenthesis.
            target['balance'] = words[1].split('(', 1)[0]
        elif words[0] == 'hash-type' and len(words) > 1:
            target['hash_type'] = words[1]
        elif words[0] == 'server' and target is proxy and len(words) >= 3:
            own = _settings(words[3:], line_no, '%s/%s' % (proxy['name'], words[1]))
            merged = dict(proxy['settings'])
            merged.update(own)
            proxy['servers'][words[1]] = (merged, line_no, list(proxy['lines']))
    return proxies


def parse_config(text):
    """Every proxy's servers with their check settings, from an HAProxy configuration's text.

    Returns C({(backend, server): record}), each record as C(server_checks()) returns it, without C(host).
    """
    found = {}
    for name, proxy in _proxies(text).items():
        for server, (settings, line_no, default_lines) in proxy['servers'].items():
            found[(name, server)] = _record(name, server, settings, line_no, default_lines)
    return found


def backend_balancing(text):
    """C({backend: {balance, hash_type}}) for every C(backend) and C(listen) section of a configuration.

    C(balance) is the algorithm keyword (C(roundrobin), C(source), C(hdr) for C(hdr(name)), ...) and
    C(hash_type) the first word of C(hash-type) (C(map-based), C(consistent)), each from the section itself,
    else from the C(defaults) section it inherits from, else None (HAProxy's own: roundrobin, map-based).
    """
    return dict((name, {'balance': proxy['balance'], 'hash_type': proxy['hash_type']})
                for name, proxy in _proxies(text).items())


def detection_seconds(inter, fastinter, fall):
    """C(inter + (fall - 1) * fastinter): see the module docstring."""
    return round(inter + (fall - 1) * fastinter, 6)


def _record(backend, server, settings, line_no, default_lines):
    check = bool(settings.get('check', False))
    inter = settings.get('inter', DEFAULT_INTER)
    fastinter = settings.get('fastinter', inter)
    downinter = settings.get('downinter', inter)
    fall = settings.get('fall', DEFAULT_FALL)
    rise = settings.get('rise', DEFAULT_RISE)
    source = 'server line %d' % line_no
    if default_lines:
        source += ', default-server line%s %s' % ('s' if len(default_lines) > 1 else '', ', '.join(str(n) for n in default_lines))
    return {
        'backend': backend, 'server': server, 'check': check,
        'inter_seconds': inter, 'fastinter_seconds': fastinter, 'downinter_seconds': downinter,
        'fall': fall, 'rise': rise,
        'detection_seconds': detection_seconds(inter, fastinter, fall) if check else None,
        'source': source,
    }


def server_checks(text, path, members):
    """The health-check record of each C((host, backend, server)) of C(members), from the configuration's text.

    A member whose server the file does not define gets C(detection_seconds) null and C(error) saying so.
    """
    servers = parse_config(text)
    records = []
    for host, backend, server in members:
        record = servers.get((backend, server))
        if record is None:
            record = {'backend': backend, 'server': server, 'check': None, 'inter_seconds': None,
                      'fastinter_seconds': None, 'downinter_seconds': None, 'fall': None, 'rise': None,
                      'detection_seconds': None, 'source': path,
                      'error': '%s defines no server %s in a backend or listen section %s' % (path, server, backend)}
        else:
            record = dict(record, source='%s: %s' % (path, record['source']), error=None)
        record['host'] = host
        records.append(record)
    return records
