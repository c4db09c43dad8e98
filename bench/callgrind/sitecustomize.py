"""Loaded by a server the instruction-count benchmark starts under callgrind (``PYTHONPATH``
points here): SIGUSR1 zeroes callgrind's counters and starts collecting, SIGUSR2 stops and
dumps them. ``QT45_CALLGRIND_TOGGLE`` names the helper library (``bench/http_bench.py`` builds
it from ``valgrind/callgrind.h``); without it this does nothing."""

import ctypes
import os
import signal

_lib = os.environ.get("QT45_CALLGRIND_TOGGLE")
if _lib:
    _cg = ctypes.CDLL(_lib)
    signal.signal(signal.SIGUSR1, lambda *_: _cg.cg_start())
    signal.signal(signal.SIGUSR2, lambda *_: _cg.cg_stop())
