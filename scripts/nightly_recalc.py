"""The nightly batch, for cron: a full recalculation with a log file and plain exit codes.

    python scripts/nightly_recalc.py --db postgresql://tracecalc@db/finance \\
        --log /var/log/tracecalc/nightly.log --wait 600

    # crontab: every night at 02:30
    30 2 * * *  /opt/tracecalc/.venv/bin/python /opt/tracecalc/scripts/nightly_recalc.py \\
        --db "$TRACECALC_DB" --log /var/log/tracecalc/nightly.log

It takes the database's recalculation lock (waiting up to --wait seconds for a running one),
recomputes everything (only records that changed are written), appends to the log file,
and exits 0 on success, 3 if another recalculation kept the lock, 1 on any other failure,
each failure with one line on standard error. A run killed half way is safe: the next run
finishes the remaining work.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tracecalc.errors import BusyError, TracecalcError

EXIT_OK, EXIT_FAILED, EXIT_BUSY = 0, 1, 3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="tracecalc nightly full recalculation")
    ap.add_argument("--db", default=os.environ.get("TRACECALC_DB", "sqlite:///tracecalc.db"))
    ap.add_argument("--log", default="tracecalc-nightly.log", help="log file (appended)")
    ap.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the lock")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)

    logging.basicConfig(filename=args.log, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("tracecalc.nightly")
    log.info("full recalculation starting on %s", args.db.split("@")[-1])
    try:
        from tracecalc.engine import Engine

        with Engine(args.db, user=os.environ.get("TRACECALC_USER", "nightly")) as eng:
            rep = eng.recalc(full=True, wait=args.wait, workers=args.workers)
    except BusyError as e:
        log.warning("busy: %s", e)
        print(f"tracecalc nightly: busy: {e}", file=sys.stderr)
        return EXIT_BUSY
    except TracecalcError as e:
        reason = str(e).splitlines()[0]
        log.error("failed: %s", reason)
        print(f"tracecalc nightly: failed: {reason}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # a cron job must end with a reason, not a traceback
        log.exception("failed")
        print(f"tracecalc nightly: failed: {type(e).__name__}: {e}".splitlines()[0],
              file=sys.stderr)
        return EXIT_FAILED
    log.info("full recalculation finished: run %d, status %s, %d formulas recomputed, "
             "%d records written, %d unchanged, %.1f s", rep.run_id, rep.status,
             rep.formulas_computed, rep.records_written, rep.records_unchanged, rep.seconds)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
