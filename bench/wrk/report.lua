-- Appended by bench/run to every case's wrk script: one machine-readable
-- line with the figures bench/run keeps.  Latencies in microseconds.

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "@@bench requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d "
        .. "max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, summary.duration,
        summary.requests / summary.duration * 1e6,
        latency:percentile(50), latency:percentile(99), latency.max,
        e.status, e.connect, e.read, e.write, e.timeout))
end
