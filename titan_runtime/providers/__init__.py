"""Worker providers for autoscaled pools: local processes, SSH hosts, a webhook to a cloud API.

A provider starts a worker for a launch the autoscaler decided on and cleans up after it; it
decides nothing. Providers depend only on `providers.base` (and the client for SSH bootstrap's
wait), never on the master's internals: the master's autoscaler loop hands them `LaunchRequest`s.
"""
