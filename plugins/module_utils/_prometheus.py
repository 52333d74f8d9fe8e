# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus text exposition format parsing and metric selection by name and labels.

Private to this collection. Parses what model servers print on C(/metrics): the classic
C(text/plain; version=0.0.4) format and the parts of OpenMetrics a scraper meets in practice.

* C(# HELP) and C(# TYPE) lines are kept as metadata; other comment lines are ignored.
* Blank lines (between families, as TGI's Rust exporter prints them) are ignored.
* Label values may contain escaped quotes, backslashes and newlines (C(\\"), C(\\\\), C(\\n)).
* Values may be C(NaN), C(+Inf), C(-Inf) or any decimal float; an optional timestamp may follow.
* Exemplars (C(# {trace_id="..."} 1.0)) after a value are ignored; C(# EOF) ends the text.
* Quoted (UTF-8) metric and label names, C({"my.metric", "my.label"="v"} 1), are accepted.

Anything else raises C(PrometheusError) naming the line number.
"""

from __future__ import annotations

import math
import re

_NAME_RE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
_LABEL_NAME_RE = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
_VALUE_RE = re.compile(r'^[+-]?(?:inf|infinity|nan|[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)$', re.IGNORECASE)
_TIMESTAMP_RE = re.compile(r'^-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$')
_ESCAPES = {'\\': '\\', '"': '"', 'n': '\n'}
_WS = ' \t'


class PrometheusError(Exception):
    """The text is not Prometheus exposition format; the message names the line number."""

    def __init__(self, message, line_number=None):
        super(PrometheusError, self).__init__(message)
        self.line_number = line_number


class Sample(object):
    """One sample line: metric name, labels (a dict), value (a float) and timestamp (or None)."""

    __slots__ = ('name', 'labels', 'value', 'timestamp')

    def __init__(self, name, labels, value, timestamp=None):
        self.name = name
        self.labels = labels
        self.value = value
        self.timestamp = timestamp

    def __eq__(self, other):
        if not isinstance(other, Sample):
            return NotImplemented
        same_value = self.value == other.value or (math.isnan(self.value) and math.isnan(other.value))
        return self.name == other.name and self.labels == other.labels and same_value and self.timestamp == other.timestamp

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def __repr__(self):
        return 'Sample(%r, %r, %r, %r)' % (self.name, self.labels, self.value, self.timestamp)

    def to_dict(self):
        return {'name': self.name, 'labels': dict(self.labels), 'value': self.value}


def _excerpt(line):
    return line if len(line) <= 120 else line[:117] + '...'


class _LineParser(object):
    """Parses one sample line; raises ValueError with a reason, which the caller turns into a PrometheusError."""

    def __init__(self, line):
        self.line = line
        self.pos = 0

    def skip_ws(self):
        while self.pos < len(self.line) and self.line[self.pos] in _WS:
            self.pos += 1

    def peek(self):
        return self.line[self.pos] if self.pos < len(self.line) else ''

    def name(self, regex, what):
        match = regex.match(self.line, self.pos)
        if not match:
            raise ValueError('expected a %s at column %d' % (what, self.pos + 1))
        self.pos = match.end()
        return match.group(0)

    def quoted(self):
        # self.line[self.pos] is the opening quote
        start = self.pos
        self.pos += 1
        out = []
        while self.pos < len(self.line):
            char = self.line[self.pos]
            if char == '\\':
                nxt = self.line[self.pos + 1:self.pos + 2]
                if not nxt:
                    break
                # Unknown escapes are kept verbatim, as the reference Python client does.
                out.append(_ESCAPES.get(nxt, '\\' + nxt))
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return ''.join(out)
            out.append(char)
            self.pos += 1
        raise ValueError('unterminated quoted string starting at column %d' % (start + 1))

    def labels(self, name):
        """Parse C({...}) at the current position; return (metric name, labels)."""
        self.pos += 1  # the '{'
        labels = {}
        while True:
            self.skip_ws()
            char = self.peek()
            if char == '}':
                self.pos += 1
                break
            if char == '"':
                key = self.quoted()
            elif char:
                key = self.name(_LABEL_NAME_RE, 'label name')
            else:
                raise ValueError('unterminated label set')
            self.skip_ws()
            if self.peek() == '=':
                self.pos += 1
                self.skip_ws()
                if self.peek() != '"':
                    raise ValueError('expected a quoted value for label %r at column %d' % (key, self.pos + 1))
                if key in labels:
                    raise ValueError('label %r given twice' % key)
                labels[key] = self.quoted()
            elif char == '"' and name is None:
                name = key  # a quoted metric name inside the braces
            else:
                raise ValueError('expected "=" after label name %r at column %d' % (key, self.pos + 1))
            self.skip_ws()
            char = self.peek()
            if char == ',':
                self.pos += 1
            elif not char:
                raise ValueError('unterminated label set (no closing "}")')
            elif char != '}':
                raise ValueError('expected "," or "}" at column %d' % (self.pos + 1))
        if name is None:
            raise ValueError('no metric name')
        return name, labels

    def sample(self):
        name = None
        if self.peek() != '{':
            name = self.name(_NAME_RE, 'metric name')
        self.skip_ws()
        labels = {}
        if self.peek() == '{':
            name, labels = self.labels(name)
        rest = self.line[self.pos:]
        # An exemplar (OpenMetrics) follows ' # '; everything after it is ignored.
        hash_at = rest.find('#')
        if hash_at != -1:
            rest = rest[:hash_at]
        fields = rest.split()
        if not fields:
            raise ValueError('metric %r has no value' % name)
        if len(fields) > 2:
            raise ValueError('unexpected text after the value and timestamp of %r: %r' % (name, ' '.join(fields[2:])))
        if not _VALUE_RE.match(fields[0]):
            raise ValueError('value %r of %r is not a number' % (fields[0], name))
        value = float(fields[0])
        timestamp = None
        if len(fields) == 2:
            if not _TIMESTAMP_RE.match(fields[1]):
                raise ValueError('timestamp %r of %r is not a number' % (fields[1], name))
            timestamp = float(fields[1]) if ('.' in fields[1] or 'e' in fields[1].lower()) else int(fields[1])
        return Sample(name, labels, value, timestamp)


def parse_text(text):
    """Parse exposition text; return C((samples, metadata)).

    C(samples) is a list of C(Sample) in text order. C(metadata) maps a family name to
    C({'type': ..., 'help': ...}) for the families that have C(# TYPE)/C(# HELP) lines.
    """
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    samples = []
    metadata = {}
    for number, raw in enumerate(text.split('\n'), 1):
        line = raw.rstrip('\r')
        stripped = line.strip(_WS)
        if not stripped:
            continue
        if stripped.startswith('#'):
            tokens = stripped[1:].strip(_WS).split(None, 2)
            if not tokens:
                continue
            if tokens[0] == 'EOF':
                break
            if tokens[0] in ('HELP', 'TYPE'):
                if len(tokens) < 2:
                    raise PrometheusError('line %d: # %s without a metric name: %r' % (number, tokens[0], _excerpt(line)), number)
                family = tokens[1]
                if family.startswith('"') and family.endswith('"') and len(family) > 1:
                    family = family[1:-1]
                entry = metadata.setdefault(family, {'type': None, 'help': None})
                if tokens[0] == 'TYPE':
                    if len(tokens) < 3 or len(tokens[2].split()) != 1:
                        raise PrometheusError('line %d: # TYPE needs exactly one type after the name: %r' % (number, _excerpt(line)), number)
                    entry['type'] = tokens[2].strip()
                else:
                    entry['help'] = tokens[2] if len(tokens) > 2 else ''
            continue
        parser = _LineParser(stripped)
        try:
            samples.append(parser.sample())
        except ValueError as exc:
            raise PrometheusError('line %d: %s: %r' % (number, exc, _excerpt(line)), number)
    return samples, metadata


def parse(text):
    """Parse exposition text and return its samples (a list of C(Sample))."""
    return parse_text(text)[0]


def labels_match(sample_labels, wanted):
    """True when every label in C(wanted) is present in C(sample_labels) with the same value."""
    if not wanted:
        return True
    for key, value in wanted.items():
        if sample_labels.get(key) != value:
            return False
    return True


def select(samples, name, labels=None):
    """Return the samples named C(name) whose labels include every C(labels) pair (exact match)."""
    return [s for s in samples if s.name == name and labels_match(s.labels, labels)]


def sum_of(samples, name, labels=None):
    """Sum of the values of C(select(samples, name, labels)); 0.0 when nothing matches."""
    return float(sum(s.value for s in select(samples, name, labels)))


def names(samples):
    """The distinct sample names, in first-seen order."""
    seen = []
    found = set()
    for sample in samples:
        if sample.name not in found:
            found.add(sample.name)
            seen.append(sample.name)
    return seen
