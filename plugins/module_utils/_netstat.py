# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Established TCP connections on a local port, read from C(/proc/net/tcp) and C(/proc/net/tcp6).

Private to this collection. Linux only. The files describe the network namespace of the process
that reads them: run inside the serving container's namespace when the server has its own.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys

from ansible.module_utils.common.text.converters import to_text

PROC_NET_TCP = ('/proc/net/tcp', '/proc/net/tcp6')

# The kernel's TCP states, as printed in the "st" column (include/net/tcp_states.h).
TCP_STATES = {
    '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2',
    '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING',
    '0C': 'NEW_SYN_RECV',
}
ESTABLISHED = '01'
LISTEN = '0A'


class NetstatError(Exception):
    """A /proc/net/tcp file could not be read or parsed; the message names the file and line."""


def _decode_address(hex_addr, byteorder):
    """Turn C(0100007F) or a 32-digit IPv6 form into an C(ipaddress) object.

    The kernel prints each 32-bit word of the address as a host-order integer, so the bytes
    are swapped on little-endian machines.
    """
    fmt = '<I' if byteorder == 'little' else '>I'
    if len(hex_addr) == 8:
        packed = struct.pack(fmt, int(hex_addr, 16))
        return ipaddress.ip_address(socket.inet_ntop(socket.AF_INET, packed))
    if len(hex_addr) == 32:
        packed = b''.join(struct.pack(fmt, int(hex_addr[i:i + 8], 16)) for i in range(0, 32, 8))
        return ipaddress.ip_address(socket.inet_ntop(socket.AF_INET6, packed))
    raise ValueError('address %r is neither 8 nor 32 hex digits' % hex_addr)


def normalize_address(addr):
    """Return an C(ipaddress) object, with IPv4-mapped IPv6 addresses (C(::ffff:a.b.c.d)) turned into IPv4."""
    if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        addr = ipaddress.ip_address(to_text(addr).strip().strip('[]'))
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _split_endpoint(field):
    addr, sep, port = field.partition(':')
    if not sep:
        raise ValueError('endpoint %r has no ":port"' % field)
    return addr, int(port, 16)


def parse_proc_net_tcp(text, byteorder=None):
    """Parse the text of C(/proc/net/tcp) or C(/proc/net/tcp6).

    Returns a list of dicts with C(local), C(local_port), C(remote), C(remote_port) and C(state)
    (the two-digit hex code, for example C(01) for ESTABLISHED). Addresses are normalized (see
    C(normalize_address)). C(byteorder) is the byte order of the machine that printed the text
    (default: this machine's). Raises C(ValueError) naming the line on malformed input.
    """
    byteorder = byteorder or sys.byteorder
    entries = []
    lines = to_text(text).split('\n')
    header_seen = False
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if not header_seen:
            if fields[0] != 'sl':
                raise ValueError('line %d: expected the "sl local_address rem_address st ..." header, got %r' % (number, line[:120]))
            header_seen = True
            continue
        if len(fields) < 4 or not fields[0].endswith(':'):
            raise ValueError('line %d: expected "N: local remote state ...", got %r' % (number, line[:120]))
        try:
            local, local_port = _split_endpoint(fields[1])
            remote, remote_port = _split_endpoint(fields[2])
            state = fields[3].upper()
            if len(state) != 2:
                raise ValueError('state %r is not two hex digits' % fields[3])
            int(state, 16)
            entries.append({
                'local': normalize_address(_decode_address(local, byteorder)),
                'local_port': local_port,
                'remote': normalize_address(_decode_address(remote, byteorder)),
                'remote_port': remote_port,
                'state': state,
            })
        except (ValueError, struct.error) as exc:
            raise ValueError('line %d: %s: %r' % (number, exc, line[:120]))
    if not header_seen:
        raise ValueError('empty text: expected at least the "sl local_address rem_address st ..." header')
    return entries


def parse_networks(peers):
    """Turn a list of addresses or CIDR networks into C(ipaddress) networks (IPv4-mapped made IPv4).

    Raises C(ValueError) naming the first entry that is neither.
    """
    networks = []
    for peer in peers or []:
        text = to_text(peer).strip().strip('[]')
        try:
            if '/' in text:
                net = ipaddress.ip_network(text, strict=False)
                if net.version == 6 and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
                    net = ipaddress.ip_network('%s/%d' % (net.network_address.ipv4_mapped, net.prefixlen - 96), strict=False)
            else:
                addr = normalize_address(text)
                net = ipaddress.ip_network(addr)
        except ValueError:
            raise ValueError('%r is not an IP address or CIDR network' % to_text(peer))
        networks.append(net)
    return networks


def count_established(entries, port, exclude=None):
    """Count ESTABLISHED entries whose local port is C(port) and whose peer is not in C(exclude) (networks).

    Returns C((counted, excluded)).
    """
    exclude = exclude or []
    counted = 0
    excluded = 0
    for entry in entries:
        if entry['state'] != ESTABLISHED or entry['local_port'] != port:
            continue
        remote = entry['remote']
        if any(remote.version == net.version and remote in net for net in exclude):
            excluded += 1
            continue
        counted += 1
    return counted, excluded


def read_entries(paths=PROC_NET_TCP, byteorder=None):
    """Read and parse the C(paths) (C(/proc/net/tcp) and C(tcp6)); return every entry.

    Missing files are skipped (C(/proc/net/tcp6) is absent when IPv6 is disabled); if none can be
    read, or one cannot be parsed, C(NetstatError) says which and why.
    """
    entries = []
    read_any = False
    for path in paths:
        try:
            with open(path, 'rb') as handle:
                text = handle.read()
        except (IOError, OSError) as exc:
            if getattr(exc, 'errno', None) == errno.ENOENT:
                continue
            raise NetstatError('cannot read %s: %s' % (path, to_text(exc)))
        read_any = True
        try:
            entries.extend(parse_proc_net_tcp(text, byteorder=byteorder))
        except ValueError as exc:
            raise NetstatError('%s is not in the expected /proc/net/tcp format: %s' % (path, to_text(exc)))
    if not read_any:
        raise NetstatError('none of %s exists: the connections source needs Linux with /proc mounted' % ', '.join(paths))
    return entries


def read_established(port, exclude=None, paths=PROC_NET_TCP, byteorder=None):
    """Read the C(paths) and count established connections to local C(port) (see C(read_entries))."""
    return count_established(read_entries(paths, byteorder), port, exclude)


def listening(ports, paths=PROC_NET_TCP, byteorder=None):
    """The sorted subset of C(ports) some socket on this host still listens on (state LISTEN)."""
    wanted = set(ports)
    return sorted(set(entry['local_port'] for entry in read_entries(paths, byteorder)
                      if entry['state'] == LISTEN and entry['local_port'] in wanted))
