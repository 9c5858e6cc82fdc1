"""The Python SDK: `TitanClient`, its asyncio twin, `TitanJob`, records, errors and the in-job `task` helpers.

The public names are re-exported by `titan_runtime`; import them from there.

The resource parser is re-exported here too: integrations (titan_dagster, titan_airflow) may use
only the SDK, and they must refuse a bad `resources` value when a DAG or op is defined, with the
very rules the SDK applies at submit, rather than a copy of them that drifts. It is pure Python
(no gRPC), so importing it keeps in-job helpers light.
"""

from titan_runtime.core.resources import (
    RESOURCE_KEYS,
    Need,
    format_cpus,
    format_memory,
    millicpus,
    parse_resources,
)

__all__ = ["RESOURCE_KEYS", "Need", "format_cpus", "format_memory", "millicpus", "parse_resources"]
