"""`serve`: a local page to draw a digit on and watch a trained run's network read it."""

from __future__ import annotations

import argparse
import errno
import os

from lenet_bench.backends import BackendUnavailable
from lenet_bench.cli.common import EXIT_INVALID, EXIT_OK, error
from lenet_bench.console import output
from lenet_bench.predict import RunUnusable, TrainedModel
from lenet_bench.results.tracking import TrackingError
from lenet_bench.serve import create_app, listen, run_server
from lenet_bench.stopping import stops_as_interrupts


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # the address first: a taken port is reported at once, not after loading the model
        sock = listen(args.host, args.port)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno and err.errno > 0 else (err.strerror or str(err))
        hint = " (another program uses it: pass --port)" if err.errno == errno.EADDRINUSE else ""
        error(f"cannot listen on {args.host}:{args.port}: {reason}{hint}")
        return EXIT_INVALID
    with sock:
        try:
            trained = TrainedModel.load(args.run, args.tracking_uri)
        except (LookupError, RunUnusable, TrackingError, BackendUnavailable) as err:
            error(str(err))
            return EXIT_INVALID
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        output.print(f"{trained.run_name} ({trained.backend_name}) at http://{shown}:{port}/  (Ctrl-C stops it)",
                     markup=False)
        try:
            # uvicorn shuts down gracefully on Ctrl-C and SIGTERM, then raises the signal again: both end here.
            with stops_as_interrupts():
                run_server(create_app(trained), sock)
        except KeyboardInterrupt:
            pass
    output.print("stopped", markup=False)
    return EXIT_OK  # stopping is how a server ends
