"""FIX adapter: venue dictionaries and the translation between quickfix messages and core events.

Importing quickfix sets SIGINT back to the operating system's default at the C level while Python
still reports its own handler, so Ctrl-C would end any process that uses it at once: no
KeyboardInterrupt, no `finally` (a run's temporary journals left behind, an explore's findings
lost). This package imports quickfix first and puts back the handler that was in force."""

import signal as _signal
import threading as _threading

_sigint = _signal.getsignal(_signal.SIGINT)
import quickfix as _quickfix  # noqa: E402,F401 - imported here for its side effect, undone below

if _sigint is not None and _threading.current_thread() is _threading.main_thread():
    _signal.signal(_signal.SIGINT, _sigint)
