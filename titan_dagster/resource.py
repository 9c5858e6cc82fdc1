"""`TitanResource`: a configured connection to a Titan master for assets and ops.

    defs = Definitions(assets=[train], resources={"titan": TitanResource(address="titan:9090")})

    @asset
    def train(context: AssetExecutionContext, titan: TitanResource):
        return titan.pipes_client(requirement="GPU").run(
            context=context, script="train.py"
        ).get_materialize_result()

`get_client()` gives the plain SDK (`TitanClient`) for anything else: submitting jobs or DAGs,
the KV store, logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from titan_dagster import remote
from titan_dagster.pipes import PipesTitanClient
from titan_runtime import TitanClient


class TitanResource(ConfigurableResource):
    """Where the Titan master is and how to authenticate; defaults follow Titan's own resolution."""

    address: str | None = Field(
        default=None, description="HOST:PORT of the master. Default: TITAN_ADDRESS, then 127.0.0.1:9090."
    )
    token: str | None = Field(
        default=None, description="Cluster token. Default: TITAN_TOKEN, then the data dir's token file."
    )

    def get_client(self) -> TitanClient:
        """A new TitanClient for this master (close it, or use it as a context manager)."""
        return remote.connect(self.address, self.token)

    def pipes_client(
        self,
        *,
        env: Mapping[str, str] | None = None,
        requirement: str | Sequence[str] | None = None,
        priority: int = 1,
        timeout: float | None = None,
        resources: str | Mapping[str, Any] | None = None,
        forward_stdio: bool = True,
    ) -> PipesTitanClient:
        """A PipesTitanClient talking to this master (`resources` as the `titan/resources` tag takes it)."""
        return PipesTitanClient(
            self.address,
            self.token,
            env=env,
            requirement=requirement,
            priority=priority,
            timeout=timeout,
            resources=resources,
            forward_stdio=forward_stdio,
        )
