# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypothesis strategies shared by the property tests. Not a test module.

* C(hostile()): values an argument may be given by mistake or malice (None, NaN, inf, -1, 0, 1e300, huge
  strings, NUL bytes, unicode, names starting with C(-), nested dicts, wrong types).
* C(garbage_text()), C(tool_output()): arbitrary text, and text as C(run_command) hands it over (undecodable
  bytes as lone surrogates).
* C(mutated(text, sep)): a real capture with a few edits (truncation, dropped/extra/duplicated lines and fields,
  swapped columns, garbage bytes, CRLF, NUL).
* C(tampered(args)): a valid-looking argument dict with up to two options replaced by hostile values, removed, or
  an unknown option added.
* C(metrics_body()): Prometheus text for selectors and values, so a test knows what a scrape shows.
"""

from __future__ import annotations

import copy
import math

from hypothesis import strategies as st

NAN = float('nan')
INF = float('inf')

HOSTILE_SCALARS = (
    None, True, False, 0, -1, 1, 2 ** 63, 10 ** 30, -10 ** 30, 0.0, -0.0, 1e-300, 1e300, -1e300, NAN, INF, -INF,
    '', ' ', '\x00', 'a\x00b', '-', '--', '-rf', '--help', '-.mount', '\n', 'a\nb', 'a;b', 'a/b', '#', '\\',
    '\udc80', '\u00fc', '\U0001F4A5', '\u202e', '\u0660\u0661', '\u00b2', '1e400', 'NaN', 'inf', '-1', '0x10',
    'a' * 64 + '.example.com', 'a..b', '..', '../../../etc/passwd', '%s%s%n', '{state}',
)


def hostile_nested():
    return st.one_of(
        st.just({'a': {'b': {'c': {'d': None}}}}), st.just([]), st.just([None]), st.just([[]]), st.just({}),
        st.just({'': ''}), st.just([NAN, INF]), st.just({'-': '\x00'}),
        st.lists(st.sampled_from(HOSTILE_SCALARS), max_size=3),
        st.dictionaries(st.sampled_from(('a', '', '-x', 'port', 'url', '\x00')), st.sampled_from(HOSTILE_SCALARS), max_size=3),
    )


def hostile():
    """One hostile value."""
    return st.one_of(
        st.sampled_from(HOSTILE_SCALARS),
        st.integers(min_value=-2 ** 70, max_value=2 ** 70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        hostile_nested(),
        st.integers(1000, 6000).map(lambda n: 'x' * n),
        st.integers(4301, 6000).map(lambda n: '9' * n),
    )


def garbage_text(max_size=200):
    """Arbitrary text, lone surrogates and NUL included."""
    return st.one_of(
        st.text(max_size=max_size),
        st.text(alphabet=st.sampled_from('\x00\r\n\t ,;:#{}"=\\\udc80\udcff\u2028\u00a0abc019'), max_size=max_size),
        st.binary(max_size=max_size).map(lambda b: b.decode('utf-8', 'surrogateescape')),
    )


def tool_output(max_size=200):
    """Command output as run_command gives it: undecodable bytes become lone surrogates."""
    return st.binary(max_size=max_size).map(lambda b: b.decode('utf-8', 'surrogateescape'))


# --------------------------------------------------------------------------------------------- captures

GARBAGE_PIECES = ('\x00', '\udcff', '\ufffd', ',', ';', '"', '\n', '\r', '#', '{', '}', '[', ']', 'nan', '-1',
                  '99999999999999999999999', '1e400', '\u0660', '\u00b2', ' ', '\t', '\\', '=', ':')


@st.composite
def edit(draw, sep):
    kind = draw(st.sampled_from(('truncate', 'drop_line', 'dup_line', 'swap_lines', 'insert', 'drop_field',
                                 'add_field', 'swap_fields', 'replace_field', 'crlf', 'blank_lines')))
    fraction = st.floats(min_value=0.0, max_value=1.0)
    return (kind, draw(fraction), draw(fraction), draw(st.one_of(st.sampled_from(GARBAGE_PIECES), garbage_text(8))), sep)


def _at(sequence, fraction):
    return min(int(fraction * len(sequence)), len(sequence) - 1)


def apply_edit(text, operation):
    kind, first, second, piece, sep = operation
    lines = text.split('\n')
    if kind == 'truncate':
        return text[:int(first * len(text))]
    if kind == 'insert':
        at = int(first * len(text))
        return text[:at] + piece + text[at:]
    if kind == 'crlf':
        return text.replace('\n', '\r\n')
    if kind == 'blank_lines':
        index = _at(lines, first)
        return '\n'.join(lines[:index] + ['', ' '] + lines[index:])
    if not lines:
        return text
    index = _at(lines, first)
    if kind == 'drop_line':
        return '\n'.join(lines[:index] + lines[index + 1:])
    if kind == 'dup_line':
        return '\n'.join(lines[:index + 1] + lines[index:])
    if kind == 'swap_lines':
        other = _at(lines, second)
        lines[index], lines[other] = lines[other], lines[index]
        return '\n'.join(lines)
    fields = lines[index].split(sep) if sep else lines[index].split()
    joiner = sep if sep else ' '
    if not fields:
        return text
    at = _at(fields, second)
    if kind == 'drop_field':
        del fields[at]
    elif kind == 'add_field':
        fields.insert(at, piece)
    elif kind == 'swap_fields':
        other = _at(fields, 1.0 - second)
        fields[at], fields[other] = fields[other], fields[at]
    elif kind == 'replace_field':
        fields[at] = piece
    lines[index] = joiner.join(fields)
    return '\n'.join(lines)


@st.composite
def mutated(draw, text, sep=',', max_edits=3):
    """C(text) with 1 to C(max_edits) edits (see C(apply_edit))."""
    for operation in draw(st.lists(edit(sep), min_size=1, max_size=max_edits)):
        text = apply_edit(text, operation)
    return text


def capture_or_garbage(text, sep=','):
    """A real capture as it is, a mutation of it, or garbage."""
    return st.one_of(st.just(text), mutated(text, sep), garbage_text())


# --------------------------------------------------------------------------------------------- arguments

def _paths(value, prefix=()):
    """Key paths into nested dicts and lists of dicts."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield from _paths(item, prefix + (index,))


def _parent(args, path):
    node = args
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def tampered(draw, args, max_changes=2):
    """C(args) with up to C(max_changes) options made hostile, removed, or an unknown option added."""
    args = copy.deepcopy(args)
    for dummy in range(draw(st.integers(min_value=0, max_value=max_changes))):
        paths = list(_paths(args))
        action = draw(st.sampled_from(('hostile', 'hostile', 'hostile', 'delete', 'unknown')))
        if action == 'unknown' or not paths:
            args[draw(st.sampled_from(('bogus', '_ansible_bogus', '', 'x' * 300)))] = draw(hostile())
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(args, path)
        if action == 'delete' and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(hostile())
    return args


def maybe(strategy):
    return st.one_of(st.none(), strategy)


def seconds(low=0.0, high=5.0):
    """A number of seconds, mostly in C([low, high]), sometimes an edge value."""
    return st.one_of(
        st.floats(min_value=low, max_value=high, allow_nan=False),
        st.sampled_from((0, 0.0, low, high, 0.1, 1)),
    )


# --------------------------------------------------------------------------------------------- metrics

def _quote(text):
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _format_value(value):
    if isinstance(value, float) and math.isnan(value):
        return 'NaN'
    if value == INF:
        return '+Inf'
    if value == -INF:
        return '-Inf'
    return repr(float(value))


NOISE = ('# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n'
         '# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n'
         'python_gc_objects_collected_total{generation="0"} 11235.0\n')


def metrics_body(selectors, values, noise=True):
    """Prometheus text with one sample per selector C((name, labels)), valued C(values) in order."""
    out = [NOISE] if noise else []
    for (name, labels), value in zip(selectors, values):
        plain = name and name[0].isalpha() and all(c.isalnum() or c in '_:' for c in name)
        pairs = ['%s=%s' % (k if k.isidentifier() and k.isascii() else _quote(k), _quote(str(v)))
                 for k, v in sorted((labels or {}).items())]
        if plain:
            out.append('# TYPE %s gauge\n' % name)
            out.append('%s{%s} %s\n' % (name, ','.join(pairs), _format_value(value)))
        else:
            out.append('{%s} %s\n' % (','.join([_quote(name)] + pairs), _format_value(value)))
    return ''.join(out)


HOSTILE_NUMBERS = (NAN, INF, -INF, -1, -0.5, 1e300, 10 ** 30, 0, '5', 'NaN', True, None)


def timing(low=0.0, high=5.0):
    """A timing option: a number of seconds in C([low, high]) three times out of four, else a hostile number
    (NaN, inf, negative, 1e300, a string, a bool, None)."""
    good = seconds(low, high)
    return st.one_of(good, good, good, st.sampled_from(HOSTILE_NUMBERS))


def absent_or_null():
    """How an option can be given without a value: null, an empty dict, an empty list, an empty string."""
    return st.sampled_from((None, {}, [], ''))
