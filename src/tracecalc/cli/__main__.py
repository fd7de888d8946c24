"""``python -m tracecalc.cli``: the ``tracecalc`` command, as ``python -m tracecalc`` is."""

import os
import sys

from tracecalc.cli import main

main(prog_name=os.path.basename(sys.argv[0]))
