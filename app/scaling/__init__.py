"""Worker pools sized from queue depth: pure policy, broker depth probes, a worker registry
with heartbeats, the autoscaler loop and the backends that start and stop workers. (The
messages on the queues are :mod:`app.queues`; this package never imports it.)"""
