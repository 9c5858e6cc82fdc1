"""`TitanComputeLogManager`: the Dagster UI reads a step's stdout/stderr from the Titan master.

A Titan worker already captures every line a job prints and ships it to the master with byte
offsets, live. So a step running on Titan does not need Dagster to capture anything: the step
process (which we start with `TITAN_DAGSTER_CAPTURE=titan`) names its log key after its Titan job
(`titan~RUN~JOB~ATTEMPT~FILEKEY`) and leaves stdout/stderr alone, and the webserver, given that
key by the step's "logs captured" event, reads the job's output from the master while it runs
and after it ended. Nothing is copied between hosts and no shared disk is needed.

Log keys that do not name a Titan job (steps that ran elsewhere, the in-process executor) are
captured and read by a local compute log manager in `base_dir`, exactly like Dagster's default.

It subclasses Dagster's cloud-storage compute log manager because that is what the webserver's
"download" link and polling subscriptions understand: Titan is the "cloud storage" here.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from dagster import Field, StringSource

from titan_dagster import remote
from titan_dagster._compat import (
    IO_TYPE_EXTENSION,
    CapturedLogContext,
    CapturedLogMetadata,
    CapturedLogSubscription,
    CloudStorageComputeLogManager,
    ComputeIOType,
    ConfigurableClass,
    ConfigurableClassData,
    LocalComputeLogManager,
    PollingComputeLogSubscriptionManager,
    UserConfigSchema,
    compute_logs_directory,
)
from titan_runtime import JobNotFound, TitanClient

#: Set in the environment of every process we start on Titan (steps, run workers): it makes the
#: process name its compute-log keys after its Titan job instead of capturing to local files.
CAPTURE_ENV = "TITAN_DAGSTER_CAPTURE"
CAPTURE_TITAN = "titan"
KEY_PREFIX = "titan~"
_SEP = "~"  # never in a Titan id ([A-Za-z0-9_.-]) nor in Dagster's file keys
#: Titan logs kept in memory by one manager (each costs the size of the log).
CACHE_ENTRIES = 32


@dataclass(frozen=True)
class TitanLogRef:
    """Which Titan job attempt's output a compute-log key stands for."""

    run_id: str
    job_id: str
    attempt: int

    @property
    def ref(self) -> str:
        return f"{self.run_id}/{self.job_id}"


def titan_file_key(run_id: str, job_id: str, attempt: int, file_key: str) -> str:
    return _SEP.join((KEY_PREFIX.rstrip(_SEP), run_id, job_id, str(attempt), file_key))


def parse_log_key(log_key: Sequence[str]) -> TitanLogRef | None:
    """The Titan job a log key names, or None for keys captured locally."""
    if not log_key or not log_key[-1].startswith(KEY_PREFIX):
        return None
    parts = log_key[-1].split(_SEP)
    if len(parts) != 5 or not parts[3].isdigit():
        return None
    return TitanLogRef(parts[1], parts[2], int(parts[3]))


def current_job_file_key(file_key: str) -> str | None:
    """The Titan-named file key for this process, if we started it on Titan; else None."""
    env = os.environ
    if env.get(CAPTURE_ENV) != CAPTURE_TITAN or file_key.startswith(KEY_PREFIX):
        return None
    run_id, job_id, attempt = env.get("TITAN_RUN_ID"), env.get("TITAN_JOB_ID"), env.get("TITAN_ATTEMPT")
    if not (run_id and job_id and attempt and attempt.isdigit()):
        return None
    return titan_file_key(run_id, job_id, int(attempt), file_key)


@dataclass
class _Buffered:
    """What has been read so far of one attempt's log, split by stream (Dagster's cursors are per stream)."""

    titan_offset: int = 0
    streams: dict[str, bytearray] = field(
        default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()}
    )
    complete: bool = False


class TitanLogCache:
    """Incremental reads of Titan job logs: each poll fetches only the bytes after the last one."""

    def __init__(self, client_factory: Any, entries: int = CACHE_ENTRIES) -> None:
        self._client_factory = client_factory
        self._entries = entries
        self._cache: OrderedDict[TitanLogRef, _Buffered] = OrderedDict()
        self._lock = threading.Lock()

    def refresh(self, ref: TitanLogRef) -> _Buffered:
        with self._lock:
            entry = self._cache.pop(ref, None) or _Buffered()
            self._cache[ref] = entry
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        if entry.complete:
            return entry
        client: TitanClient = self._client_factory()
        try:
            record = client.get_job(ref.ref)  # before reading: if it had ended, the read gets everything
        except JobNotFound:
            entry.complete = True
            return entry
        attempt = record.attempts[ref.attempt - 1] if 0 < ref.attempt <= len(record.attempts) else None
        ended = attempt is not None and attempt.state not in ("ASSIGNED", "RUNNING")
        lines = client.read_logs(ref.ref, attempt=ref.attempt, offset=entry.titan_offset)
        with self._lock:
            for line in lines:
                if line.offset < entry.titan_offset:
                    continue  # a concurrent refresh got it first
                entry.streams[line.stream].extend(str(line).encode() + b"\n")
                entry.titan_offset = line.next_offset
            if ended and attempt is not None and entry.titan_offset >= attempt.log_size:
                entry.complete = True
        return entry

    def read(self, ref: TitanLogRef, stream: str, offset: int, max_bytes: int | None) -> tuple[bytes, int]:
        entry = self.refresh(ref)
        data = bytes(entry.streams[stream][offset : None if max_bytes is None else offset + max_bytes])
        return data, offset + len(data)

    def is_complete(self, ref: TitanLogRef) -> bool:
        return self.refresh(ref).complete


class TitanComputeLogManager(CloudStorageComputeLogManager, ConfigurableClass):
    """Compute logs of steps that ran on Titan, read from the Titan master.

    Configure it in dagster.yaml::

        compute_logs:
          module: titan_dagster
          class: TitanComputeLogManager
          config:
            address: titan-master.internal:9090   # default: TITAN_ADDRESS, then 127.0.0.1:9090
            token: {env: TITAN_TOKEN}              # default: TITAN_TOKEN, then the data dir's token file
            base_dir: /var/dagster/compute_logs    # local captures and downloads; default: the instance's storage

    Titan keeps the logs; `delete_logs` removes only local copies.
    """

    def __init__(
        self,
        base_dir: str | None = None,
        address: str | None = None,
        token: str | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        super().__init__()
        self._base_dir = base_dir
        self._address = address
        self._token = token
        self._inst_data = inst_data
        self._local: LocalComputeLogManager | None = None
        self._client: TitanClient | None = None
        self._client_lock = threading.Lock()
        self._logs = TitanLogCache(self.client)
        self._subscriptions = PollingComputeLogSubscriptionManager(self)

    # ------------------------------------------------------------------ ConfigurableClass

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "base_dir": Field(StringSource, is_required=False),
            "address": Field(StringSource, is_required=False),
            "token": Field(StringSource, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> TitanComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    # ------------------------------------------------------------------ plumbing

    def client(self) -> TitanClient:
        with self._client_lock:
            if self._client is None:
                self._client = remote.connect(self._address, self._token)
            return self._client

    @property
    def local_manager(self) -> LocalComputeLogManager:
        if self._local is None:
            base = self._base_dir
            if base is None:
                try:
                    base = (
                        compute_logs_directory(self._instance.root_directory) if self.has_instance else None
                    )
                except Exception:  # an instance without a root directory
                    base = None
            self._local = LocalComputeLogManager(
                base or os.path.join(tempfile.gettempdir(), "titan-dagster-logs")
            )
        return self._local

    @property
    def upload_interval(self) -> int | None:
        return None  # the worker streams to the master already

    # ------------------------------------------------------------------ capture (in the step process)

    def build_log_key_for_run(self, run_id: str, step_key: str) -> Sequence[str]:
        return [run_id, "compute_logs", current_job_file_key(step_key) or step_key]

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        ref = parse_log_key(log_key)
        if ref is None:
            with self.local_manager.capture_logs(log_key) as context:
                yield context
            return
        try:
            yield CapturedLogContext(log_key)
        finally:
            # Titan reads the process's own stdout/stderr: make sure nothing stays in our buffers.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass

    @contextmanager
    def open_log_stream(self, log_key: Sequence[str], io_type: ComputeIOType) -> Iterator[IO[Any] | None]:
        with self.local_manager.open_log_stream(log_key, io_type) as stream:
            yield stream

    # ------------------------------------------------------------------ reading (in the webserver)

    def is_capture_complete(self, log_key: Sequence[str]) -> bool:
        ref = parse_log_key(log_key)
        if ref is None:
            return self.local_manager.is_capture_complete(log_key)
        return self._logs.is_complete(ref)

    def get_log_data_for_type(
        self, log_key: Sequence[str], io_type: ComputeIOType, offset: int, max_bytes: int | None
    ) -> tuple[bytes | None, int]:
        ref = parse_log_key(log_key)
        if ref is None:
            return self.local_manager.get_log_data_for_type(log_key, io_type, offset, max_bytes)
        return self._logs.read(ref, io_type.value, offset or 0, max_bytes)

    def get_log_metadata(self, log_key: Sequence[str]) -> CapturedLogMetadata:
        if parse_log_key(log_key) is None:
            return self.local_manager.get_log_metadata(log_key)
        return super().get_log_metadata(log_key)

    def display_path_for_type(self, log_key: Sequence[str], io_type: ComputeIOType) -> str:
        ref = parse_log_key(log_key)
        if ref is None:
            return self.local_manager.get_captured_local_path(log_key, IO_TYPE_EXTENSION[io_type])
        return f"{io_type.value} of Titan job {ref.ref} (attempt {ref.attempt}) at {self.client().address}"

    def download_url_for_type(self, log_key: Sequence[str], io_type: ComputeIOType) -> str | None:
        return self.local_manager.get_captured_log_download_url(log_key, io_type)

    def cloud_storage_has_logs(
        self, log_key: Sequence[str], io_type: ComputeIOType, partial: bool = False
    ) -> bool:
        ref = parse_log_key(log_key)
        if ref is None:
            return False
        try:
            return partial or self._logs.is_complete(ref)
        except JobNotFound:
            return False

    def upload_to_cloud_storage(
        self, log_key: Sequence[str], io_type: ComputeIOType, partial: bool = False
    ) -> None:
        return None  # Titan has the output already

    def download_from_cloud_storage(
        self, log_key: Sequence[str], io_type: ComputeIOType, partial: bool = False
    ) -> None:
        """Write the Titan log to the local path the webserver's download link serves."""
        ref = parse_log_key(log_key)
        if ref is None:
            return
        data, _ = self._logs.read(ref, io_type.value, 0, None)
        path = self.local_manager.get_captured_local_path(
            log_key, IO_TYPE_EXTENSION[io_type], partial=partial
        )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def delete_logs(self, log_key: Sequence[str] | None = None, prefix: Sequence[str] | None = None) -> None:
        self.local_manager.delete_logs(log_key=log_key, prefix=prefix)

    def get_log_keys_for_log_key_prefix(
        self, log_key_prefix: Sequence[str], io_type: ComputeIOType
    ) -> Sequence[list[str]]:
        return self.local_manager.get_log_keys_for_log_key_prefix(log_key_prefix, io_type)

    # ------------------------------------------------------------------ live updates

    def subscribe(self, log_key: Sequence[str], cursor: str | None = None) -> CapturedLogSubscription:
        if parse_log_key(log_key) is None:
            return self.local_manager.subscribe(log_key, cursor)
        subscription = CapturedLogSubscription(self, log_key, cursor)
        self._subscriptions.add_subscription(subscription)
        return subscription

    def unsubscribe(self, subscription: CapturedLogSubscription) -> None:
        if parse_log_key(subscription.log_key) is None:
            self.local_manager.unsubscribe(subscription)
        else:
            self._subscriptions.remove_subscription(subscription)

    def dispose(self) -> None:
        self._subscriptions.dispose()
        if self._local is not None:
            self._local.dispose()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
