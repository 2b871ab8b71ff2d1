"""The payments service: answers POST /pay on port 8000, one server span per request (joined to
the caller's trace through the W3C traceparent header), a counter of payments, and a log record
every 50 payments."""

import logging
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import metrics, trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind

from otel_setup import setup

setup()
tracer = trace.get_tracer("payments")
paid = metrics.get_meter("payments").create_counter("payments.paid")
log = logging.getLogger("payments")
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        # header names as sent (urllib capitalises them); the propagator looks up lowercase names
        ctx = extract({k.lower(): v for k, v in self.headers.items()})
        with tracer.start_as_current_span("POST /pay", context=ctx, kind=SpanKind.SERVER) as span:
            span.set_attribute("http.route", "/pay")
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(random.uniform(0.002, 0.01))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            span.set_attribute("http.status_code", 200)
        paid.add(1)
        count += 1
        if count % 50 == 0:
            log.info("%d payments", count)

    def log_message(self, *args):
        pass


log.info("payments listening on 8000")
ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
