from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetryPolicy(_message.Message):
    __slots__ = ("attempts", "backoff_initial", "backoff_factor", "backoff_max", "max_lost", "fallback")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_INITIAL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FACTOR_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_LOST_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    backoff_initial: float
    backoff_factor: float
    backoff_max: float
    max_lost: int
    fallback: _containers.RepeatedCompositeFieldContainer[TagSet]
    def __init__(self, attempts: _Optional[int] = ..., backoff_initial: _Optional[float] = ..., backoff_factor: _Optional[float] = ..., backoff_max: _Optional[float] = ..., max_lost: _Optional[int] = ..., fallback: _Optional[_Iterable[_Union[TagSet, _Mapping]]] = ...) -> None: ...

class TagSet(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ApprovalGate(_message.Message):
    __slots__ = ("required", "message", "timeout")
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    required: bool
    message: str
    timeout: float
    def __init__(self, required: bool = ..., message: _Optional[str] = ..., timeout: _Optional[float] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("id", "kind", "script_name", "script_hash", "command", "args", "env", "tags", "priority", "timeout", "delay", "parents", "retries", "affinity", "node", "labels", "slots", "project_hash", "workdir", "memory_mb", "port", "ports", "health", "restart", "replicas", "service", "trigger_rule", "when", "branch", "map_over", "map_of", "map_index", "iteration", "approval", "allow_failure", "secrets", "unplaceable_after", "cpus", "gpus", "preload", "call")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_NAME_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_HASH_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_HASH_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_RULE_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    MAP_OVER_FIELD_NUMBER: _ClassVar[int]
    MAP_OF_FIELD_NUMBER: _ClassVar[int]
    MAP_INDEX_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FAILURE_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    UNPLACEABLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PRELOAD_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    script_name: str
    script_hash: str
    command: _containers.RepeatedScalarFieldContainer[str]
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    timeout: float
    delay: float
    parents: _containers.RepeatedScalarFieldContainer[str]
    retries: RetryPolicy
    affinity: str
    node: str
    labels: _containers.ScalarMap[str, str]
    slots: int
    project_hash: str
    workdir: str
    memory_mb: int
    port: int
    ports: _containers.RepeatedScalarFieldContainer[str]
    health: HealthCheck
    restart: RestartPolicy
    replicas: int
    service: str
    trigger_rule: str
    when: str
    branch: bool
    map_over: str
    map_of: str
    map_index: int
    iteration: int
    approval: ApprovalGate
    allow_failure: bool
    secrets: _containers.ScalarMap[str, str]
    unplaceable_after: float
    cpus: float
    gpus: int
    preload: _containers.RepeatedScalarFieldContainer[str]
    call: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., script_name: _Optional[str] = ..., script_hash: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., timeout: _Optional[float] = ..., delay: _Optional[float] = ..., parents: _Optional[_Iterable[str]] = ..., retries: _Optional[_Union[RetryPolicy, _Mapping]] = ..., affinity: _Optional[str] = ..., node: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., slots: _Optional[int] = ..., project_hash: _Optional[str] = ..., workdir: _Optional[str] = ..., memory_mb: _Optional[int] = ..., port: _Optional[int] = ..., ports: _Optional[_Iterable[str]] = ..., health: _Optional[_Union[HealthCheck, _Mapping]] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., replicas: _Optional[int] = ..., service: _Optional[str] = ..., trigger_rule: _Optional[str] = ..., when: _Optional[str] = ..., branch: bool = ..., map_over: _Optional[str] = ..., map_of: _Optional[str] = ..., map_index: _Optional[int] = ..., iteration: _Optional[int] = ..., approval: _Optional[_Union[ApprovalGate, _Mapping]] = ..., allow_failure: bool = ..., secrets: _Optional[_Mapping[str, str]] = ..., unplaceable_after: _Optional[float] = ..., cpus: _Optional[float] = ..., gpus: _Optional[int] = ..., preload: _Optional[_Iterable[str]] = ..., call: _Optional[str] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("tcp", "http", "expect", "interval", "timeout", "grace", "failures")
    TCP_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    tcp: bool
    http: str
    expect: int
    interval: float
    timeout: float
    grace: float
    failures: int
    def __init__(self, tcp: bool = ..., http: _Optional[str] = ..., expect: _Optional[int] = ..., interval: _Optional[float] = ..., timeout: _Optional[float] = ..., grace: _Optional[float] = ..., failures: _Optional[int] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("attempts", "window", "backoff_initial", "backoff_max")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_INITIAL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    window: float
    backoff_initial: float
    backoff_max: float
    def __init__(self, attempts: _Optional[int] = ..., window: _Optional[float] = ..., backoff_initial: _Optional[float] = ..., backoff_max: _Optional[float] = ...) -> None: ...

class AttemptInfo(_message.Message):
    __slots__ = ("id", "number", "worker_id", "state", "exit_code", "signal", "reason", "assigned_at", "started_at", "ended_at", "pid", "log_size", "host", "ports", "healthy", "gpus")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: int
    worker_id: str
    state: str
    exit_code: int
    signal: str
    reason: str
    assigned_at: float
    started_at: float
    ended_at: float
    pid: int
    log_size: int
    host: str
    ports: _containers.ScalarMap[str, int]
    healthy: bool
    gpus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., worker_id: _Optional[str] = ..., state: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., reason: _Optional[str] = ..., assigned_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., pid: _Optional[int] = ..., log_size: _Optional[int] = ..., host: _Optional[str] = ..., ports: _Optional[_Mapping[str, int]] = ..., healthy: bool = ..., gpus: _Optional[_Iterable[str]] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("run_id", "id", "state", "reason", "attempt", "worker_id", "exit_code", "created_at", "ready_at", "started_at", "ended_at", "spec", "attempts", "has_result", "worker_name", "tags", "priority", "parents", "kind", "iteration", "decision_json", "approval_message", "result_json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    READY_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    HAS_RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    DECISION_JSON_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    id: str
    state: str
    reason: str
    attempt: int
    worker_id: str
    exit_code: int
    created_at: float
    ready_at: float
    started_at: float
    ended_at: float
    spec: JobSpec
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptInfo]
    has_result: bool
    worker_name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    parents: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    iteration: int
    decision_json: str
    approval_message: str
    result_json: str
    def __init__(self, run_id: _Optional[str] = ..., id: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., created_at: _Optional[float] = ..., ready_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[AttemptInfo, _Mapping]]] = ..., has_result: bool = ..., worker_name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., parents: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ..., iteration: _Optional[int] = ..., decision_json: _Optional[str] = ..., approval_message: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("id", "name", "state", "labels", "agent_run_id", "created_at", "ended_at", "jobs", "counts", "reason", "settled", "seq")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    state: str
    labels: _containers.ScalarMap[str, str]
    agent_run_id: str
    created_at: float
    ended_at: float
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    counts: _containers.ScalarMap[str, int]
    reason: str
    settled: bool
    seq: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_run_id: _Optional[str] = ..., created_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ..., counts: _Optional[_Mapping[str, int]] = ..., reason: _Optional[str] = ..., settled: bool = ..., seq: _Optional[int] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("id", "name", "host", "pid", "tags", "slots", "running", "cpu_percent", "memory_percent", "last_heartbeat", "state", "cpu_count", "memory_bytes", "gpus", "version", "registered_at", "pool", "provider", "launch_id", "cpus_used", "memory_used_mb", "gpus_used", "memory_enforcement")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_ID_FIELD_NUMBER: _ClassVar[int]
    CPUS_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    host: str
    pid: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    running: int
    cpu_percent: float
    memory_percent: float
    last_heartbeat: float
    state: str
    cpu_count: int
    memory_bytes: int
    gpus: _containers.RepeatedScalarFieldContainer[str]
    version: str
    registered_at: float
    pool: str
    provider: str
    launch_id: str
    cpus_used: float
    memory_used_mb: int
    gpus_used: _containers.RepeatedScalarFieldContainer[str]
    memory_enforcement: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., running: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., last_heartbeat: _Optional[float] = ..., state: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., registered_at: _Optional[float] = ..., pool: _Optional[str] = ..., provider: _Optional[str] = ..., launch_id: _Optional[str] = ..., cpus_used: _Optional[float] = ..., memory_used_mb: _Optional[int] = ..., gpus_used: _Optional[_Iterable[str]] = ..., memory_enforcement: _Optional[str] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ("run_id", "name", "labels", "agent_run_id", "jobs", "open_for")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FOR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    labels: _containers.ScalarMap[str, str]
    agent_run_id: str
    jobs: _containers.RepeatedCompositeFieldContainer[JobSpec]
    open_for: float
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_run_id: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[JobSpec, _Mapping]]] = ..., open_for: _Optional[float] = ...) -> None: ...

class SubmitRunResponse(_message.Message):
    __slots__ = ("run_id", "job_ids", "existed")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    existed: bool
    def __init__(self, run_id: _Optional[str] = ..., job_ids: _Optional[_Iterable[str]] = ..., existed: bool = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("run_id", "select_jobs", "job_states", "job_limit")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SELECT_JOBS_FIELD_NUMBER: _ClassVar[int]
    JOB_STATES_FIELD_NUMBER: _ClassVar[int]
    JOB_LIMIT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    select_jobs: bool
    job_states: _containers.RepeatedScalarFieldContainer[str]
    job_limit: int
    def __init__(self, run_id: _Optional[str] = ..., select_jobs: bool = ..., job_states: _Optional[_Iterable[str]] = ..., job_limit: _Optional[int] = ...) -> None: ...

class WaitRequest(_message.Message):
    __slots__ = ("ref", "timeout")
    REF_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ref: str
    timeout: float
    def __init__(self, ref: _Optional[str] = ..., timeout: _Optional[float] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit", "agent_run_id", "states", "name", "labels", "since", "before_seq")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AGENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    limit: int
    agent_run_id: str
    states: _containers.RepeatedScalarFieldContainer[str]
    name: str
    labels: _containers.ScalarMap[str, str]
    since: float
    before_seq: int
    def __init__(self, limit: _Optional[int] = ..., agent_run_id: _Optional[str] = ..., states: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., since: _Optional[float] = ..., before_seq: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("kinds", "run_id", "recent_runs", "interval", "results")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_RUNS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    recent_runs: int
    interval: float
    results: bool
    def __init__(self, kinds: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ..., recent_runs: _Optional[int] = ..., interval: _Optional[float] = ..., results: bool = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("snapshot", "at", "runs", "jobs", "workers", "resync", "queues")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    at: float
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    resync: bool
    queues: _containers.RepeatedCompositeFieldContainer[QueueDepth]
    def __init__(self, snapshot: bool = ..., at: _Optional[float] = ..., runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ..., resync: bool = ..., queues: _Optional[_Iterable[_Union[QueueDepth, _Mapping]]] = ...) -> None: ...

class QueueDepth(_message.Message):
    __slots__ = ("tags", "jobs")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    jobs: int
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., jobs: _Optional[int] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("ref", "wait", "timeout", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: str
    wait: bool
    timeout: float
    reason: str
    def __init__(self, ref: _Optional[str] = ..., wait: bool = ..., timeout: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cancelled: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadLogsRequest(_message.Message):
    __slots__ = ("ref", "attempt", "offset", "follow", "and_later")
    REF_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    AND_LATER_FIELD_NUMBER: _ClassVar[int]
    ref: str
    attempt: int
    offset: int
    follow: bool
    and_later: bool
    def __init__(self, ref: _Optional[str] = ..., attempt: _Optional[int] = ..., offset: _Optional[int] = ..., follow: bool = ..., and_later: bool = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("attempt", "offset", "data")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    offset: int
    data: bytes
    def __init__(self, attempt: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ResultResponse(_message.Message):
    __slots__ = ("has_result", "json")
    HAS_RESULT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    has_result: bool
    json: str
    def __init__(self, has_result: bool = ..., json: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class KvRequest(_message.Message):
    __slots__ = ("op", "key", "value", "expected", "delta")
    OP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    op: str
    key: str
    value: str
    expected: str
    delta: int
    def __init__(self, op: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., expected: _Optional[str] = ..., delta: _Optional[int] = ...) -> None: ...

class KvResponse(_message.Message):
    __slots__ = ("found", "value", "changed", "number", "members")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: str
    changed: bool
    number: int
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, found: bool = ..., value: _Optional[str] = ..., changed: bool = ..., number: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class KvListRequest(_message.Message):
    __slots__ = ("prefix", "after", "limit")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    after: str
    limit: int
    def __init__(self, prefix: _Optional[str] = ..., after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class KvKeyInfo(_message.Message):
    __slots__ = ("key", "kind")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    key: str
    kind: str
    def __init__(self, key: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class KvList(_message.Message):
    __slots__ = ("keys", "more")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KvKeyInfo]
    more: bool
    def __init__(self, keys: _Optional[_Iterable[_Union[KvKeyInfo, _Mapping]]] = ..., more: bool = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("hash", "data", "size")
    HASH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    hash: str
    data: bytes
    size: int
    def __init__(self, hash: _Optional[str] = ..., data: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("hash", "size")
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    hash: str
    size: int
    def __init__(self, hash: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class HasArtifactResponse(_message.Message):
    __slots__ = ("present",)
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    present: bool
    def __init__(self, present: bool = ...) -> None: ...

class NamedArtifact(_message.Message):
    __slots__ = ("name", "run_id", "hash", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    run_id: str
    hash: str
    size: int
    def __init__(self, name: _Optional[str] = ..., run_id: _Optional[str] = ..., hash: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ArtifactListRequest(_message.Message):
    __slots__ = ("run_id", "limit")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    limit: int
    def __init__(self, run_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ArtifactList(_message.Message):
    __slots__ = ("artifacts", "more")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[NamedArtifact]
    more: bool
    def __init__(self, artifacts: _Optional[_Iterable[_Union[NamedArtifact, _Mapping]]] = ..., more: bool = ...) -> None: ...

class ServiceQuery(_message.Message):
    __slots__ = ("id", "all")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    id: str
    all: bool
    def __init__(self, id: _Optional[str] = ..., all: bool = ...) -> None: ...

class ServiceInfo(_message.Message):
    __slots__ = ("id", "service", "run_id", "worker_id", "worker_name", "host", "port", "ports", "endpoint", "state", "restarts", "started_at", "reason")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    service: str
    run_id: str
    worker_id: str
    worker_name: str
    host: str
    port: int
    ports: _containers.ScalarMap[str, int]
    endpoint: str
    state: str
    restarts: int
    started_at: float
    reason: str
    def __init__(self, id: _Optional[str] = ..., service: _Optional[str] = ..., run_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., ports: _Optional[_Mapping[str, int]] = ..., endpoint: _Optional[str] = ..., state: _Optional[str] = ..., restarts: _Optional[int] = ..., started_at: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceInfo]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceInfo, _Mapping]]] = ...) -> None: ...

class ServiceRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ServiceActionResponse(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...

class AddJobsRequest(_message.Message):
    __slots__ = ("run_id", "jobs", "open_for")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FOR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    jobs: _containers.RepeatedCompositeFieldContainer[JobSpec]
    open_for: float
    def __init__(self, run_id: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[JobSpec, _Mapping]]] = ..., open_for: _Optional[float] = ...) -> None: ...

class AddIterationRequest(_message.Message):
    __slots__ = ("run_id", "jobs", "after", "max_iterations")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    jobs: _containers.RepeatedScalarFieldContainer[str]
    after: str
    max_iterations: int
    def __init__(self, run_id: _Optional[str] = ..., jobs: _Optional[_Iterable[str]] = ..., after: _Optional[str] = ..., max_iterations: _Optional[int] = ...) -> None: ...

class GateDecision(_message.Message):
    __slots__ = ("ref", "approved", "by", "comment")
    REF_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    ref: str
    approved: bool
    by: str
    comment: str
    def __init__(self, ref: _Optional[str] = ..., approved: bool = ..., by: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class JobList(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class AgentRunInfo(_message.Message):
    __slots__ = ("id", "state", "runs", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    created_at: float
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ..., created_at: _Optional[float] = ...) -> None: ...

class AgentRunList(_message.Message):
    __slots__ = ("agent_runs",)
    AGENT_RUNS_FIELD_NUMBER: _ClassVar[int]
    agent_runs: _containers.RepeatedCompositeFieldContainer[AgentRunInfo]
    def __init__(self, agent_runs: _Optional[_Iterable[_Union[AgentRunInfo, _Mapping]]] = ...) -> None: ...

class SavedDag(_message.Message):
    __slots__ = ("name", "run", "saved_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    SAVED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    run: SubmitRunRequest
    saved_at: float
    def __init__(self, name: _Optional[str] = ..., run: _Optional[_Union[SubmitRunRequest, _Mapping]] = ..., saved_at: _Optional[float] = ...) -> None: ...

class SavedDagList(_message.Message):
    __slots__ = ("dags",)
    DAGS_FIELD_NUMBER: _ClassVar[int]
    dags: _containers.RepeatedCompositeFieldContainer[SavedDag]
    def __init__(self, dags: _Optional[_Iterable[_Union[SavedDag, _Mapping]]] = ...) -> None: ...

class SavedDagRef(_message.Message):
    __slots__ = ("name", "run_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    run_id: str
    def __init__(self, name: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("name", "dag", "cron", "catch_up", "next_fire", "last_fire", "last_run_id", "created_at", "seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DAG_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dag: str
    cron: str
    catch_up: bool
    next_fire: float
    last_fire: float
    last_run_id: str
    created_at: float
    seconds: bool
    def __init__(self, name: _Optional[str] = ..., dag: _Optional[str] = ..., cron: _Optional[str] = ..., catch_up: bool = ..., next_fire: _Optional[float] = ..., last_fire: _Optional[float] = ..., last_run_id: _Optional[str] = ..., created_at: _Optional[float] = ..., seconds: bool = ...) -> None: ...

class ScheduleList(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class ScheduleRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("worker", "deadline")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    worker: str
    deadline: float
    def __init__(self, worker: _Optional[str] = ..., deadline: _Optional[float] = ...) -> None: ...

class PoolStatus(_message.Message):
    __slots__ = ("name", "provider", "tags", "slots", "min", "max", "idle_timeout", "workers", "launching", "draining", "waiting_jobs", "failures", "backoff_until", "note", "cpus", "memory", "gpus", "declares_gpus")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    LAUNCHING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    WAITING_JOBS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_UNTIL_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DECLARES_GPUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    min: int
    max: int
    idle_timeout: float
    workers: int
    launching: int
    draining: int
    waiting_jobs: int
    failures: int
    backoff_until: float
    note: str
    cpus: str
    memory: str
    gpus: _containers.RepeatedScalarFieldContainer[str]
    declares_gpus: bool
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., min: _Optional[int] = ..., max: _Optional[int] = ..., idle_timeout: _Optional[float] = ..., workers: _Optional[int] = ..., launching: _Optional[int] = ..., draining: _Optional[int] = ..., waiting_jobs: _Optional[int] = ..., failures: _Optional[int] = ..., backoff_until: _Optional[float] = ..., note: _Optional[str] = ..., cpus: _Optional[str] = ..., memory: _Optional[str] = ..., gpus: _Optional[_Iterable[str]] = ..., declares_gpus: bool = ...) -> None: ...

class AutoscalerStatus(_message.Message):
    __slots__ = ("enabled", "interval", "pools", "unserved", "unserved_reasons")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_REASONS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    interval: float
    pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    unserved: _containers.RepeatedCompositeFieldContainer[TagSet]
    unserved_reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, enabled: bool = ..., interval: _Optional[float] = ..., pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ..., unserved: _Optional[_Iterable[_Union[TagSet, _Mapping]]] = ..., unserved_reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class AutoscalerEvent(_message.Message):
    __slots__ = ("at", "pool", "kind", "message", "launch_id", "worker")
    AT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    at: float
    pool: str
    kind: str
    message: str
    launch_id: str
    worker: str
    def __init__(self, at: _Optional[float] = ..., pool: _Optional[str] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., launch_id: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class GcRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: bool = ...) -> None: ...

class GcReport(_message.Message):
    __slots__ = ("runs", "kv_keys", "log_files", "log_bytes", "artifacts", "artifact_bytes", "run_ids", "dry_run")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    KV_KEYS_FIELD_NUMBER: _ClassVar[int]
    LOG_FILES_FIELD_NUMBER: _ClassVar[int]
    LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    runs: int
    kv_keys: int
    log_files: int
    log_bytes: int
    artifacts: int
    artifact_bytes: int
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    def __init__(self, runs: _Optional[int] = ..., kv_keys: _Optional[int] = ..., log_files: _Optional[int] = ..., log_bytes: _Optional[int] = ..., artifacts: _Optional[int] = ..., artifact_bytes: _Optional[int] = ..., run_ids: _Optional[_Iterable[str]] = ..., dry_run: bool = ...) -> None: ...

class AuditQuery(_message.Message):
    __slots__ = ("since", "limit")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since: float
    limit: int
    def __init__(self, since: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("at", "who", "kind", "peer", "rpc", "target", "outcome")
    AT_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    at: float
    who: str
    kind: str
    peer: str
    rpc: str
    target: str
    outcome: str
    def __init__(self, at: _Optional[float] = ..., who: _Optional[str] = ..., kind: _Optional[str] = ..., peer: _Optional[str] = ..., rpc: _Optional[str] = ..., target: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class AuditList(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class TokenSpec(_message.Message):
    __slots__ = ("name", "role", "expires_in", "pool", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    expires_in: float
    pool: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., expires_in: _Optional[float] = ..., pool: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("name", "role", "created_at", "expires_at", "pool", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    created_at: float
    expires_at: float
    pool: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., pool: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("kind", "name", "run_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    run_id: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class TokenCreated(_message.Message):
    __slots__ = ("token", "info")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    token: str
    info: TokenInfo
    def __init__(self, token: _Optional[str] = ..., info: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...

class TokenList(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class TokenRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SecretValue(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: bytes
    def __init__(self, name: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class SecretRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("name", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    updated_at: float
    def __init__(self, name: _Optional[str] = ..., updated_at: _Optional[float] = ...) -> None: ...

class SecretList(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    def __init__(self, secrets: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ...) -> None: ...

class AutoscalerEventsRequest(_message.Message):
    __slots__ = ("limit", "pool")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    limit: int
    pool: str
    def __init__(self, limit: _Optional[int] = ..., pool: _Optional[str] = ...) -> None: ...

class AutoscalerEventList(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AutoscalerEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AutoscalerEvent, _Mapping]]] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttemptExit(_message.Message):
    __slots__ = ("outcome", "exit_code", "signal", "reason", "has_result", "result_json", "log_size", "ended_at")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HAS_RESULT_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    exit_code: int
    signal: str
    reason: str
    has_result: bool
    result_json: str
    log_size: int
    ended_at: float
    def __init__(self, outcome: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., reason: _Optional[str] = ..., has_result: bool = ..., result_json: _Optional[str] = ..., log_size: _Optional[int] = ..., ended_at: _Optional[float] = ...) -> None: ...

class HeldAttempt(_message.Message):
    __slots__ = ("attempt_id", "pid", "finished", "exit", "log_size", "started_at", "host", "ports", "healthy")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    pid: int
    finished: bool
    exit: AttemptExit
    log_size: int
    started_at: float
    host: str
    ports: _containers.ScalarMap[str, int]
    healthy: bool
    def __init__(self, attempt_id: _Optional[str] = ..., pid: _Optional[int] = ..., finished: bool = ..., exit: _Optional[_Union[AttemptExit, _Mapping]] = ..., log_size: _Optional[int] = ..., started_at: _Optional[float] = ..., host: _Optional[str] = ..., ports: _Optional[_Mapping[str, int]] = ..., healthy: bool = ...) -> None: ...

class WorkerHello(_message.Message):
    __slots__ = ("worker_id", "name", "host", "pid", "tags", "slots", "cpu_count", "memory_bytes", "gpus", "version", "held", "draining", "pool", "provider", "launch_id", "memory_enforcement")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    name: str
    host: str
    pid: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    cpu_count: int
    memory_bytes: int
    gpus: _containers.RepeatedScalarFieldContainer[str]
    version: str
    held: _containers.RepeatedCompositeFieldContainer[HeldAttempt]
    draining: bool
    pool: str
    provider: str
    launch_id: str
    memory_enforcement: str
    def __init__(self, worker_id: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., cpu_count: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., held: _Optional[_Iterable[_Union[HeldAttempt, _Mapping]]] = ..., draining: bool = ..., pool: _Optional[str] = ..., provider: _Optional[str] = ..., launch_id: _Optional[str] = ..., memory_enforcement: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("cpu_percent", "memory_percent", "running")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    memory_percent: float
    running: int
    def __init__(self, cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., running: _Optional[int] = ...) -> None: ...

class AttemptStarted(_message.Message):
    __slots__ = ("attempt_id", "pid", "started_at", "host", "ports")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    pid: int
    started_at: float
    host: str
    ports: _containers.ScalarMap[str, int]
    def __init__(self, attempt_id: _Optional[str] = ..., pid: _Optional[int] = ..., started_at: _Optional[float] = ..., host: _Optional[str] = ..., ports: _Optional[_Mapping[str, int]] = ...) -> None: ...

class LogData(_message.Message):
    __slots__ = ("attempt_id", "offset", "data")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    offset: int
    data: bytes
    def __init__(self, attempt_id: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class AttemptFinished(_message.Message):
    __slots__ = ("attempt_id", "exit")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    exit: AttemptExit
    def __init__(self, attempt_id: _Optional[str] = ..., exit: _Optional[_Union[AttemptExit, _Mapping]] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "started", "logs", "finished", "draining", "leaving", "healthy")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    hello: WorkerHello
    heartbeat: Heartbeat
    started: _containers.RepeatedCompositeFieldContainer[AttemptStarted]
    logs: _containers.RepeatedCompositeFieldContainer[LogData]
    finished: _containers.RepeatedCompositeFieldContainer[AttemptFinished]
    draining: bool
    leaving: bool
    healthy: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hello: _Optional[_Union[WorkerHello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., started: _Optional[_Iterable[_Union[AttemptStarted, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[LogData, _Mapping]]] = ..., finished: _Optional[_Iterable[_Union[AttemptFinished, _Mapping]]] = ..., draining: bool = ..., leaving: bool = ..., healthy: _Optional[_Iterable[str]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval", "superseded", "log_offsets")
    class LogOffsetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    LOG_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval: float
    superseded: _containers.RepeatedScalarFieldContainer[str]
    log_offsets: _containers.ScalarMap[str, int]
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval: _Optional[float] = ..., superseded: _Optional[_Iterable[str]] = ..., log_offsets: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("attempt_id", "run_id", "job_id", "attempt", "spec", "credential", "env", "secret_env", "gpus", "inputs")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    run_id: str
    job_id: str
    attempt: int
    spec: JobSpec
    credential: str
    env: _containers.ScalarMap[str, str]
    secret_env: _containers.ScalarMap[str, str]
    gpus: _containers.RepeatedScalarFieldContainer[str]
    inputs: _containers.ScalarMap[str, str]
    def __init__(self, attempt_id: _Optional[str] = ..., run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., credential: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., secret_env: _Optional[_Mapping[str, str]] = ..., gpus: _Optional[_Iterable[str]] = ..., inputs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CancelAttempt(_message.Message):
    __slots__ = ("attempt_id", "reason", "grace")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    reason: str
    grace: float
    def __init__(self, attempt_id: _Optional[str] = ..., reason: _Optional[str] = ..., grace: _Optional[float] = ...) -> None: ...

class MasterMessage(_message.Message):
    __slots__ = ("welcome", "assign", "cancel", "acks", "drain")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: _containers.RepeatedCompositeFieldContainer[Assignment]
    cancel: _containers.RepeatedCompositeFieldContainer[CancelAttempt]
    acks: _containers.RepeatedScalarFieldContainer[str]
    drain: Drain
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., cancel: _Optional[_Iterable[_Union[CancelAttempt, _Mapping]]] = ..., acks: _Optional[_Iterable[str]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("deadline", "reason")
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deadline: float
    reason: str
    def __init__(self, deadline: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...
