#!/usr/bin/env python
# Stands in for the get-pip.py script ansible-test downloads from a host this network cannot reach.
# ansible-test runs it as `python get_pip_X.py [pip options] pip==X [--no-setuptools] [--no-wheel]`
# to put pip into a fresh virtualenv: ensurepip does that offline, then pip installs what was asked.
from __future__ import annotations

import os
import subprocess
import sys


def main():
    env = dict(os.environ)
    # ensurepip hides the machine's pip configuration (mirrors) behind PIP_CONFIG_FILE=/dev/null.
    env.pop('PIP_CONFIG_FILE', None)
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], env=env, stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet'] + args, env=env)


if __name__ == '__main__':
    main()
