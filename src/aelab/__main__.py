"""``python -m aelab``: the command line."""

import os
import sys

from .cli import main
from .comm import world_from_env

code = main()
if world_from_env() > 1:
    # One rank of a data-parallel run, its work done and its files closed: end now, without the
    # interpreter's teardown, in which the destroyed process group's C++ threads can abort the
    # process ("terminate called without an active exception", SIGABRT) after a successful run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
