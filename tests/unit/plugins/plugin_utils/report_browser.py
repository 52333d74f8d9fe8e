# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render an HTML report in headless Chromium (Debian's chromium package) and read back what rendered.

C(measure(path)) injects, into a copy of the page, a script that measures every host row, bar, failure mark,
batch line, LB marker and load series (getBoundingClientRect and computed visibility) and writes the result into
the DOM as JSON; C(--dump-dom) returns the DOM after it ran. C(screenshot(path, png)) takes a PNG and
C(png_summary(png)) decodes it (stdlib only: zlib and the PNG filters) to tell its size and how many colours it has.
Also used by the molecule scenarios' report tests (imported by path).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib

MEASURE_SCRIPT = r"""
<script>
(function () {
  function box(el) {
    var r = el.getBoundingClientRect(), s = window.getComputedStyle(el);
    return {x: r.x, y: r.y, width: r.width, height: r.height,
            visible: (r.width > 0 || r.height > 0) && s.visibility !== 'hidden' && s.display !== 'none'
                     && parseFloat(s.opacity || '1') > 0};
  }
  function all(selector, extra) {
    return Array.prototype.map.call(document.querySelectorAll(selector), function (el) {
      var out = box(el);
      Array.prototype.forEach.call(el.attributes, function (a) {
        if (a.name.indexOf('data-') === 0) { out[a.name.slice(5)] = a.value; }
      });
      if (extra) { extra(el, out); }
      return out;
    });
  }
  var result = {
    title: document.title,
    rows: all('g.host-row', function (el, out) {
      out.label = (el.querySelector('text.host-label') || {}).textContent || null;
      out.bars = all.call(null, 'g.host-row[data-host="' + CSS.escape(el.getAttribute('data-host')) + '"] rect.bar');
    }),
    failures: all('g.failure-mark', function (el, out) { out.text = el.textContent; }),
    failure_rows: all('tr.failure-row', function (el, out) { out.text = el.textContent; }),
    batch_lines: all('line.batch-line'),
    batch_labels: all('text.batch-label', function (el, out) { out.text = el.textContent; }),
    lb_markers: all('g.lb-marker', function (el, out) { out.title = (el.querySelector('title') || {}).textContent; }),
    load_series: all('polyline.load-series'),
    timeline: all('svg#timeline')
  };
  var pre = document.createElement('pre');
  pre.id = 'modelops-measure';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium():
    """The Chromium binary, or None."""
    return shutil.which('chromium') or shutil.which('chromium-browser')


def _run(args, timeout=120):
    binary = chromium()
    if binary is None:
        raise RuntimeError('chromium is not installed (apt-get install chromium, or make bootstrap)')
    profile = tempfile.mkdtemp(prefix='modelops-chromium-')
    try:
        return subprocess.run([binary, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                               '--hide-scrollbars', '--user-data-dir=%s' % profile] + args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=True,
                              universal_newlines=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def measure(path, window=(1400, 900)):
    """What rendered, as the injected script measured it in a copy of the page at C(path)."""
    with open(path, encoding='utf-8') as handle:
        page = handle.read()
    if '</body>' not in page:
        raise ValueError('%s has no </body>' % path)
    handle, copy = tempfile.mkstemp(suffix='.html', prefix='measure-')
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as stream:
            stream.write(page.replace('</body>', MEASURE_SCRIPT + '</body>', 1))
        done = _run(['--window-size=%d,%d' % window, '--dump-dom', 'file://%s' % copy])
    finally:
        os.remove(copy)
    found = re.search(r'<pre id="modelops-measure">(.*?)</pre>', done.stdout, re.S)
    if found is None:
        raise AssertionError('the measuring script left nothing in the DOM; stderr: %s' % done.stderr[-2000:])
    return json.loads(html.unescape(found.group(1)))


def screenshot(path, png, window=(1400, 900)):
    """A PNG of the page at C(path) (the page itself, no script added)."""
    _run(['--window-size=%d,%d' % window, '--screenshot=%s' % png, 'file://%s' % os.path.abspath(path)])
    return png


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_summary(png, sample_rows=60):
    """C({'width', 'height', 'colours'}) of an 8-bit RGB(A) PNG; C(colours) counts the distinct pixels of
    C(sample_rows) rows spread over the image."""
    with open(png, 'rb') as handle:
        data = handle.read()
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        raise ValueError('%s is not a PNG' % png)
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', chunk)
        elif kind == b'IDAT':
            idat.append(chunk)
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    if depth != 8 or colour_type not in (2, 6):
        raise ValueError('%s: only 8-bit RGB/RGBA is decoded here (depth %d, colour type %d)' % (png, depth, colour_type))
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b''.join(idat))
    stride = width * channels
    previous = bytearray(stride)
    wanted = set(range(0, height, max(1, height // sample_rows)))
    colours = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xff
            elif kind == 2:
                line[i] = (line[i] + up) & 0xff
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xff
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, previous[i - channels] if i >= channels else 0)) & 0xff
        if row in wanted:
            colours.update(bytes(line[i:i + channels]) for i in range(0, stride, channels))
        previous = line
    return {'width': width, 'height': height, 'colours': len(colours)}
