"""The Python SDK: `TitanClient`, its asyncio twin, `TitanJob`, records, errors and the in-job `task` helpers.

The public names are re-exported by `titan_runtime`; import them from there.
"""
