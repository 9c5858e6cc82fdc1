"""What one dashboard process holds: its settings, sessions, hub, and its own client of the master."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from titan_runtime.client.aio import AsyncTitanClient
from titan_runtime.client.errors import TitanError, Unauthenticated
from titan_runtime.dashboard.auth import SessionStore, SigninThrottle
from titan_runtime.dashboard.feeds import ClusterFeed
from titan_runtime.dashboard.live import Hub
from titan_runtime.dashboard.render import Renderer
from titan_runtime.dashboard.settings import DashboardSettings

#: Run watches open at once (the master serves 32 watchers in all, to every client: leave room).
MAX_RUN_WATCHES = 8
#: Log followers open at once (one per job page being watched, whatever the number of browsers).
MAX_LOG_TAILS = 32
#: Seconds the shared streams ride out a lost master before the pages say it is unreachable (they
#: go on trying after that: the banner goes when it is back).
STREAM_RECONNECT_TIMEOUT = 5.0
#: How often sessions are swept: an idle or revoked one ends, with the live streams it holds open.
SWEEP_EVERY = 60.0

log = logging.getLogger("titan.dashboard")


class Dashboard:
    """The process's state, reachable from every route as `request.app.state.dashboard`."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.renderer = Renderer(settings.root_path)
        self.sessions = SessionStore(
            settings.secret_key or secrets.token_bytes(32), settings.session_idle, settings.session_max_age
        )
        self.throttle = SigninThrottle()
        self.hub = Hub(limits={"run": MAX_RUN_WATCHES, "log": MAX_LOG_TAILS})
        self._client: AsyncTitanClient | None = None
        self._cluster: ClusterFeed | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def client(self) -> AsyncTitanClient:
        """The dashboard's own client (its token): the shared live streams only."""
        if self._client is None:
            raise RuntimeError("the dashboard has not started")
        return self._client

    @property
    def cluster(self) -> ClusterFeed:
        if self._cluster is None:
            raise RuntimeError("the dashboard has not started")
        return self._cluster

    @property
    def address(self) -> str:
        return self.client.address

    async def start(self) -> None:
        """Inside the serving loop (an asyncio channel belongs to the loop it is made in)."""
        s = self.settings
        self._client = AsyncTitanClient(
            address=s.address,
            token=s.token,
            data_dir=s.data_dir,
            reconnect_timeout=STREAM_RECONNECT_TIMEOUT,
            tls_ca=s.tls_ca,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
        )
        self._cluster = ClusterFeed(self._client, self.renderer, s.recent_runs)
        self.hub.add_permanent(self._cluster)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="dashboard sessions")

    async def _sweep(self) -> None:
        """A live stream is one long request: nothing else would notice that its session went idle,
        or that its token was revoked, while the browser only watches."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)  # a sweep's period
            for session in self.sessions.all():
                if self.sessions.expired(session):
                    self.sessions.end(session)
                elif session.streams and self.sessions.due_for_check(session):
                    try:
                        await session.client.whoami()
                    except Unauthenticated:
                        self.sessions.end(session)
                    except TitanError as exc:  # the master away: keep it, check again next time
                        log.debug("dashboard: checking a session: %s", exc)
                    else:
                        self.sessions.checked(session)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.hub.close()
        self.sessions.close_all()
        if self._client is not None:
            await self._client.close()

    def user_client(self, token: str) -> AsyncTitanClient:
        """A client that calls the master with a user's own token (never empty: an empty one would
        fall back to the dashboard's own, from the environment or the data dir)."""
        if not token:
            raise ValueError("a user's client needs the user's token")
        s = self.settings
        return AsyncTitanClient(
            address=self.address,
            token=token,
            reconnect_timeout=s.page_reconnect_timeout,
            tls_ca=s.tls_ca,
            tls_cert=s.tls_cert,
            tls_key=s.tls_key,
        )
