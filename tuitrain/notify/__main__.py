"""Provides `python -m tuitrain.notify serve RUNS_DIR`: the runs directory's notifier process."""

import sys

from tuitrain.notify.daemon import main

sys.exit(main())
