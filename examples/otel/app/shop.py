"""The shop: a checkout every 100 ms, each a server span "GET /checkout" with a client span
"POST /pay" calling the payments service (0.3 s timeout). A failed payment sets the checkout span's
status to error and logs "payment failed"; every checkout is counted and timed as metrics."""

import logging
import os
import time
import urllib.request

from opentelemetry import metrics, trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_setup import setup

setup()
tracer = trace.get_tracer("shop")
meter = metrics.get_meter("shop")
checkouts = meter.create_counter("checkout.requests")
duration = meter.create_histogram("checkout.duration", unit="ms")
log = logging.getLogger("shop")
url = os.environ.get("PAYMENTS_URL", "http://payments:8000/pay")

# wait (without spans) until payments answers, so that checkouts judge payments, not its start-up
for _ in range(300):
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=1).read()
        break
    except Exception:  # noqa: BLE001 - not listening yet
        time.sleep(0.1)
log.info("shop started, paying at %s", url)

while True:
    start = time.time()
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.route", "/checkout")
        try:
            with tracer.start_as_current_span("POST /pay", kind=SpanKind.CLIENT):
                headers = {"Content-Type": "application/json"}
                inject(headers)
                req = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
                urllib.request.urlopen(req, timeout=0.3).read()
            outcome = "ok"
        except Exception as e:  # noqa: BLE001 - any failure of the call is a failed checkout
            span.set_status(Status(StatusCode.ERROR, f"payment failed: {e}"))
            outcome = "error"
            log.error("payment failed: %s", e)
    ms = (time.time() - start) * 1000
    checkouts.add(1, {"outcome": outcome})
    duration.record(ms, {"outcome": outcome})
    time.sleep(0.1)
