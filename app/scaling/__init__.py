"""Work queues autoscaled from queue depth: pure policy, broker depth probes, a worker registry
with heartbeats, the autoscaler loop and the backends that start and stop workers."""
