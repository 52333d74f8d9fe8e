# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's report as one self-contained HTML page: an SVG timeline drawn from the JSON report alone.

Controller side (the C(shutdown_report) action plugin, C(tools/report_html.py)). C(render(report, load=None))
returns the page: inline CSS and inline SVG, no script, nothing loaded from elsewhere. Every element a test
looks for has a stable class and data attributes:

- C(g.host-row[data-host][data-status]) one per host, in the report's order; inside it C(rect.bar[data-phase])
  per phase that ran (C(drain), C(stop), C(policy), C(verify));
- C(g.failure-mark[data-host]) per failed host (a red outline and cross, with its C(failed_step) and message);
- C(line.batch-line[data-batch]) per batch, at its start, labelled C(batch N);
- C(g.lb-marker[data-host][data-lb]) per load balancer's mark, at the moment it stopped sending (C(marked_at));
- with load records: C(polyline.load-series[data-series=sent|errors]) in a second panel on the same axis;
- C(tr.failure-row[data-host]) and C(tr.host-table-row[data-host]) in the tables under the chart.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile

PHASES = ('drain', 'stop', 'policy', 'verify')
PHASE_LABELS = {'drain': 'drain wait', 'stop': 'stop', 'policy': 'policy', 'verify': 'verify'}
COLOURS = {'drain': '#e8a33d', 'stop': '#4a7fd6', 'policy': '#9b59b6', 'verify': '#2ea866'}
FAILED = ('failed', 'refused', 'unknown')
ERROR_OUTCOMES = ('http_error', 'connection_error', 'cut', 'unfinished')

LEFT = 170          # room for the host names
RIGHT = 30
PLOT_WIDTH = 1000
ROW = 30            # one host row
AXIS = 34           # the time axis under the rows
TOP = 30            # batch labels above the rows
LOAD_HEIGHT = 150

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:22px 0 6px}
.status-ok{color:#1d7f45}.status-failed,.status-halted{color:#c0392b}
.summary{margin:4px 0;font-size:14px}.halt{color:#c0392b;font-weight:bold}
table{border-collapse:collapse;font-size:13px;margin-top:4px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr.failure-row td{background:#fdecea}
svg{display:block;font-size:12px}svg text{fill:#222}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
.empty-note{fill:#888;font-style:italic}.fail-text{fill:#c0392b}
"""


def _e(value):
    return html.escape('' if value is None else str(value), quote=True)


def _num(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _f(value):
    return ('%.1f' % value).rstrip('0').rstrip('.') if value is not None else ''


def load_records(path):
    """The loadgen's C(--records) JSONL (one JSON object a line) as a list; lines that are not records are skipped.
    Raises OSError when the file cannot be read."""
    records = []
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def load_buckets(load, origin):
    """Per second from C(origin): C([(second, sent, errors)]) - requests by the second they started in, and of
    those, the ones that did not end C(ok) (HTTP or connection errors, cut, unfinished)."""
    sent = {}
    errors = {}
    for record in load or []:
        start = _num(record.get('start')) if isinstance(record, dict) else None
        if start is None:
            continue
        second = int(math.floor(start - origin))
        sent[second] = sent.get(second, 0) + 1
        if record.get('outcome') in ERROR_OUTCOMES:
            errors[second] = errors.get(second, 0) + 1
    if not sent:
        return []
    return [(second, sent.get(second, 0), errors.get(second, 0)) for second in range(min(sent), max(sent) + 1)]


def _host_times(host):
    times = [_num(host.get(key)) for key in ('marked_at', 'started_at', 'finished_at')]
    times += [_num(lb.get('marked_at')) for lb in host.get('load_balancers') or [] if isinstance(lb, dict)]
    for interval in (host.get('phases') or {}).values():
        if isinstance(interval, dict):
            times += [_num(interval.get('start')), _num(interval.get('end'))]
    return [t for t in times if t is not None]


def _ticks(low, high):
    """Tick positions in seconds from the run start, a round step giving about 10 ticks."""
    span = max(high - low, 1e-9)
    raw = span / 10.0
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= step * factor:
            step *= factor
            break
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(round(value, 6))
        value += step
    return ticks


def _failure_time(host):
    """Where a failure is marked: the end of the last phase that ran, else the call's end, else the mark."""
    phases = host.get('phases') or {}
    ends = [_num(phases[p].get('end')) for p in PHASES if isinstance(phases.get(p), dict)]
    ends = [t for t in ends if t is not None]
    if ends:
        return max(ends)
    for key in ('finished_at', 'started_at', 'marked_at'):
        if _num(host.get(key)) is not None:
            return _num(host.get(key))
    return None


def is_failed(host):
    return host.get('status') in FAILED or bool(host.get('failed_step'))


def explanation(host):
    """The failure's text: C(<failed_step>: <msg>)."""
    step = host.get('failed_step') or host.get('status') or 'failed'
    msg = host.get('msg') or 'no message'
    return '%s: %s' % (step, msg)


class _Axis(object):
    def __init__(self, origin, low, high):
        self.origin = origin
        self.low = low
        self.high = high if high > low else low + 1.0

    def x(self, epoch):
        return LEFT + (epoch - self.origin - self.low) / (self.high - self.low) * PLOT_WIDTH

    def xs(self, seconds):
        return LEFT + (seconds - self.low) / (self.high - self.low) * PLOT_WIDTH


def _axis_svg(axis, y, height_above):
    out = ['<g class="time-axis">',
           '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#444"/>' % (LEFT, y, LEFT + PLOT_WIDTH, y)]
    for tick in _ticks(axis.low, axis.high):
        x = axis.xs(tick)
        out.append('<line class="tick" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>'
                   % (x, y - height_above, x, y))
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>' % (x, y, x, y + 4))
        out.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s s</text>' % (x, y + 16, _e(_f(tick) or '0')))
    out.append('</g>')
    return out


def _timeline(report, axis):
    hosts = [h for h in report.get('hosts') or [] if isinstance(h, dict)]
    rows_height = max(1, len(hosts)) * ROW
    height = TOP + rows_height + AXIS + 14
    width = LEFT + PLOT_WIDTH + RIGHT
    out = ['<svg id="timeline" class="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" role="img" aria-label="Rollout timeline">' % (width, height, width, height),
           '<title>Rollout timeline: one row per host, seconds from the run start</title>']
    out += _axis_svg(axis, TOP + rows_height, rows_height)
    for index, host in enumerate(hosts):
        y = TOP + index * ROW
        name = host.get('host')
        status = host.get('status')
        out.append('<g class="host-row" id="host-row-%d" data-host="%s" data-status="%s" data-batch="%s">'
                   % (index, _e(name), _e(status), _e(host.get('batch'))))
        out.append('<rect class="row-bg" x="0" y="%d" width="%d" height="%d" fill="%s"/>'
                   % (y, width, ROW, '#fafafa' if index % 2 else '#ffffff'))
        out.append('<text class="host-label" x="6" y="%d">%s</text>' % (y + 19, _e(name)))
        phases = host.get('phases') or {}
        drawn = 0
        for phase in PHASES:
            interval = phases.get(phase)
            if not isinstance(interval, dict):
                continue
            start, end = _num(interval.get('start')), _num(interval.get('end'))
            if start is None and end is None:
                continue
            start = end if start is None else start
            end = start if end is None else end
            x1, x2 = axis.x(start), axis.x(end)
            out.append('<rect class="bar bar-%s" data-phase="%s" data-host="%s" x="%.1f" y="%d" width="%.1f" '
                       'height="%d" fill="%s"><title>%s %s: %s s</title></rect>'
                       % (phase, phase, _e(name), x1, y + 7, max(x2 - x1, 2.0), ROW - 14, COLOURS[phase],
                          _e(name), PHASE_LABELS[phase], _f(end - start)))
            drawn += 1
        if not drawn and not is_failed(host):
            anchor = _failure_time(host)
            x = axis.x(anchor) + 6 if anchor is not None else LEFT + 6
            out.append('<text class="empty-note" x="%.1f" y="%d">%s</text>'
                       % (min(x, LEFT + PLOT_WIDTH - 200), y + 19, _e(status or 'no record')))
        for lb in host.get('load_balancers') or []:
            marked = _num(lb.get('marked_at')) if isinstance(lb, dict) else None
            if marked is None:
                continue
            x = axis.x(marked)
            out.append('<g class="lb-marker" data-host="%s" data-lb="%s"><title>%s stopped sending to %s at +%s s '
                       '(%s to %s)</title><path d="M%.1f %d l-5 -7 h10 z" fill="#222"/>'
                       '<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222" stroke-width="1.5"/></g>'
                       % (_e(name), _e(lb.get('lb')), _e(lb.get('lb')), _e(name), _f(marked - axis.origin),
                          _e(lb.get('previous_state')), _e(lb.get('state')), x, y + 8, x, y + 8, x, y + ROW - 3))
        if is_failed(host):
            at = _failure_time(host)
            x = axis.x(at) if at is not None else LEFT + 8
            text = explanation(host)
            bars = [axis.x(_num(phases[p].get('start')) or at or axis.origin) for p in PHASES
                    if isinstance(phases.get(p), dict)]
            left = min(bars + [x - 8])
            # The text goes on the side of the mark with more room, cut to fit (the table has all of it).
            room_right, room_left = width - (x + 14), left - 8 - LEFT
            if room_right >= room_left:
                text_x, anchor = x + 14, 'start'
                room = room_right
            else:
                text_x, anchor = left - 8, 'end'
                room = room_left
            chars = max(12, int(room / 6.6))
            short = text if len(text) <= chars else text[:chars - 3] + '...'
            out.append('<g class="failure-mark" data-host="%s" data-step="%s"><title>%s</title>'
                       '<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="none" stroke="#c0392b" stroke-width="2"/>'
                       '<path d="M%.1f %d l10 10 M%.1f %d l-10 10" stroke="#c0392b" stroke-width="2.5"/>'
                       '<text class="fail-text" x="%.1f" y="%d" text-anchor="%s">%s</text></g>'
                       % (_e(name), _e(host.get('failed_step')), _e(text), left - 3, y + 4, x - left + 14, ROW - 8,
                          x - 5, y + 10, x + 5, y + 10, text_x, y + 19, anchor, _e(short)))
        out.append('</g>')
    if not hosts:
        out.append('<text class="empty-note" x="%d" y="%d">no host</text>' % (LEFT + 6, TOP + 19))
    for batch in report.get('batches') or []:
        start = _num(batch.get('started_at')) if isinstance(batch, dict) else None
        if start is None:
            continue
        x = axis.x(start)
        out.append('<g class="batch"><line class="batch-line" data-batch="%s" x1="%.1f" y1="%d" x2="%.1f" y2="%d" '
                   'stroke="#555" stroke-width="1.5" stroke-dasharray="5 3"/><text class="batch-label" x="%.1f" '
                   'y="%d">batch %s</text></g>'
                   % (_e(batch.get('number')), x, TOP - 6, x, TOP + rows_height, x + 3, TOP - 10, _e(batch.get('number'))))
    out.append('</svg>')
    return out


def _load_panel(buckets, axis):
    width = LEFT + PLOT_WIDTH + RIGHT
    plot_top = 24
    height = plot_top + LOAD_HEIGHT + AXIS + 8
    peak = max([sent for dummy, sent, dummy2 in buckets] + [1])
    base = plot_top + LOAD_HEIGHT

    def y(count):
        return base - count / float(peak) * LOAD_HEIGHT

    out = ['<svg id="load" class="load-panel" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" role="img" aria-label="Load during the run">' % (width, height, width, height),
           '<title>Requests per second through the load balancer (by the second they started) and errors</title>']
    out += _axis_svg(axis, base, LOAD_HEIGHT)
    out.append('<text x="6" y="%d">%d req/s</text><text x="6" y="%d">0</text>' % (plot_top + 4, peak, base))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (LEFT, plot_top, LEFT, base))
    for series, index, colour in (('sent', 1, '#4a7fd6'), ('errors', 2, '#c0392b')):
        points = []
        for bucket in buckets:
            left, right = axis.xs(bucket[0]), axis.xs(bucket[0] + 1)
            points.append('%.1f,%.1f %.1f,%.1f' % (left, y(bucket[index]), right, y(bucket[index])))
        out.append('<polyline class="load-series" data-series="%s" data-total="%d" data-peak="%d" points="%s" '
                   'fill="none" stroke="%s" stroke-width="2"/>'
                   % (series, sum(b[index] for b in buckets), max(b[index] for b in buckets), ' '.join(points), colour))
    out.append('</svg>')
    return out


def _legend(with_load):
    items = ['<span><i style="background:%s"></i>%s</span>' % (COLOURS[p], PHASE_LABELS[p]) for p in PHASES]
    items.append('<span><i style="background:none;border-left:2px dashed #555"></i>batch start</span>')
    items.append('<span>&#9660; a load balancer stopped sending</span>')
    items.append('<span><i style="background:none;border:2px solid #c0392b"></i>failure</span>')
    if with_load:
        items.append('<span><i style="background:#4a7fd6;height:3px"></i>requests sent/s</span>')
        items.append('<span><i style="background:#c0392b;height:3px"></i>errors/s (failed, cut, unfinished)</span>')
    return '<div class="legend" id="legend">%s</div>' % ''.join(items)


def run_status(report):
    hosts = [h for h in report.get('hosts') or [] if isinstance(h, dict)]
    if report.get('halted'):
        return 'halted'
    if any(is_failed(h) for h in hosts):
        return 'failed'
    return 'ok'


def render(report, load=None):
    """The HTML page of C(report) (the JSON report), with a load panel when C(load) (the loadgen's per-request
    records) is given."""
    report = report if isinstance(report, dict) else {}
    hosts = [h for h in report.get('hosts') or [] if isinstance(h, dict)]
    origin = _num(report.get('started_at'))
    times = [t for h in hosts for t in _host_times(h)]
    times += [_num(b.get(k)) for b in report.get('batches') or [] if isinstance(b, dict)
              for k in ('started_at', 'finished_at') if _num(b.get(k)) is not None]
    if _num(report.get('finished_at')) is not None:
        times.append(_num(report['finished_at']))
    if origin is None:
        origin = min(times) if times else 0.0
    low = min([0.0] + [t - origin for t in times])
    high = max([1.0] + [t - origin for t in times])
    buckets = load_buckets(load, origin) if load is not None else None
    if buckets:
        low = min(low, buckets[0][0])
        high = max(high, buckets[-1][0] + 1)
    axis = _Axis(origin, low, high)
    status = run_status(report)
    totals = report.get('totals') or {}
    by_status = totals.get('by_status') or {}
    title = 'Shutdown run %s' % (report.get('run_id') or '?')
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             '<title>%s</title>' % _e(title), '<style>%s</style></head><body>' % CSS,
             '<h1 id="run-title">%s - <span id="run-status" class="status-%s">%s</span></h1>'
             % (_e(title), _e(status), _e(status))]
    parts.append('<p class="summary" id="run-summary">mode %s; %s to %s; %s host(s): %s; duration %s s, floor sum %s '
                 's</p>' % (_e(report.get('mode')), _e(report.get('started')), _e(report.get('finished')),
                            _e(totals.get('hosts', len(hosts))),
                            _e(', '.join('%s %s' % (count, name) for name, count in sorted(by_status.items())) or 'none'),
                            _e(totals.get('duration_seconds')), _e(totals.get('floor_seconds_sum'))))
    if report.get('halted'):
        parts.append('<p class="halt" id="halt-reason">Halted: %s</p>' % _e(report.get('halt_reason') or 'no reason given'))
    parts.append('<h2>Timeline</h2>')
    parts.append('<p class="summary">Seconds from the run start (the first mark). Bars: what each host did; '
                 'triangles: the moment each load balancer stopped sending to it.</p>')
    parts.append(_legend(bool(buckets)))
    parts += _timeline(report, axis)
    if buckets:
        parts.append('<h2>Load through the load balancer</h2>')
        parts += _load_panel(buckets, axis)
    elif load is not None:
        parts.append('<p class="summary" id="no-load">The load records hold no request.</p>')
    failed = [h for h in hosts if is_failed(h)]
    parts.append('<h2>Failures</h2>')
    if failed:
        parts.append('<table id="failures"><tr><th>host</th><th>batch</th><th>status</th><th>failed step</th>'
                     '<th>what happened</th></tr>')
        for host in failed:
            parts.append('<tr class="failure-row" data-host="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td>'
                         '<td>%s</td></tr>' % (_e(host.get('host')), _e(host.get('host')), _e(host.get('batch')),
                                               _e(host.get('status')), _e(host.get('failed_step')),
                                               _e(host.get('msg') or 'no message')))
        parts.append('</table>')
    else:
        parts.append('<p class="summary" id="no-failures">No host failed.</p>')
    parts.append('<h2>Hosts</h2><table id="hosts"><tr><th>host</th><th>batch</th><th>status</th><th>drained in (s)</th>'
                 '<th>stopped in (s)</th><th>units</th></tr>')
    for host in hosts:
        units = ', '.join('%s (%s)' % (u.get('unit'), u.get('classification'))
                          for u in host.get('units') or [] if isinstance(u, dict))
        parts.append('<tr class="host-table-row" data-host="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td>'
                     '<td>%s</td><td>%s</td></tr>'
                     % (_e(host.get('host')), _e(host.get('host')), _e(host.get('batch')), _e(host.get('status')),
                        _e(host.get('drain_seconds')), _e(host.get('stop_seconds')), _e(units)))
    parts.append('</table></body></html>')
    return '\n'.join(parts) + '\n'


def write_atomically(path, text):
    """Write C(text) to C(path) (UTF-8, mode 0644) through a temporary file in the same directory and a rename: a report
    half-written by a killed run is never left behind. Used for every report file, by the action plugin and the CLI."""
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as stream:
            stream.write(text)
        os.chmod(temp, 0o644)
        os.rename(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
