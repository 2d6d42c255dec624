"""The ledger's tables (SQLAlchemy 2.0 typed ORM). Alembic migrations in accounting/ create them.

Times are stored as whole seconds since the epoch (UTC by definition) behind the UtcTime
type, so Python sees aware datetimes while SQL can subtract and compare times as integers on
SQLite and PostgreSQL alike: the usage reports split hours across months in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from hpcbridge.jobs.records import NOT_AN_ARRAY

# Constraint names fixed by convention, so migrations on SQLite and PostgreSQL agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcTime(TypeDecorator[datetime]):
    """An aware UTC datetime stored as integer epoch seconds; naive datetimes are refused."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"ledger times must be timezone-aware datetimes, not {value!r}")
        return int(value.timestamp())

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Cluster(Base):
    """A cluster whose accounting is kept here, by the name its scheduler uses."""

    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    scheduler: Mapped[str] = mapped_column(String(16))


class Account(Base):
    """A project or grant that jobs are charged to (Slurm account, PBS account/project)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)


class User(Base):
    """A user name as the scheduler records it."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)


class JobAttempt(Base):
    """One run of one job or array task; a requeued job has one row per run.

    The natural key (cluster, job id, array index, attempt) makes every ingest an idempotent
    upsert: reading the same accounting twice, or after a crash, rewrites the same rows. Each
    index costs ingest about a tenth of its speed, so there are two more only: on start times
    (in 24-day buckets, see usage_sql.BUCKET_S), for the reports and rollup refreshes that
    read a few months (hpcbridge.ledger.rollup), and on the few unfinished attempts, which
    reports read live.
    """

    __tablename__ = "job_attempts"
    __table_args__ = (
        UniqueConstraint("cluster_id", "job_id", "array_index", "attempt"),
        # start_at / usage_sql.BUCKET_S, spelled out: the queries must repeat it exactly.
        Index("ix_job_attempts_start_bucket", text("(start_at / 2097152)")),
        Index(
            "ix_job_attempts_unfinished",
            "start_at",
            sqlite_where=text("end_at IS NULL"),
            postgresql_where=text("end_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    source: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UtcTime)
    job_id: Mapped[str] = mapped_column(String(64))
    array_index: Mapped[int] = mapped_column(default=NOT_AN_ARRAY)
    attempt: Mapped[int]
    name: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    partition: Mapped[str | None] = mapped_column(String(128))
    qos: Mapped[str | None] = mapped_column(String(128))
    submit_at: Mapped[datetime | None] = mapped_column(UtcTime)
    eligible_at: Mapped[datetime | None] = mapped_column(UtcTime)
    start_at: Mapped[datetime | None] = mapped_column(UtcTime)
    end_at: Mapped[datetime | None] = mapped_column(UtcTime)
    elapsed_s: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None]
    exit_signal: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(Text)
    node_list: Mapped[str | None] = mapped_column(Text)
    node_count: Mapped[int | None]
    alloc_cpus: Mapped[int | None]
    alloc_gpus: Mapped[int | None]
    tres: Mapped[str | None] = mapped_column(Text)
    req_walltime_s: Mapped[int | None] = mapped_column(BigInteger)
    req_mem_mb: Mapped[int | None] = mapped_column(BigInteger)
    max_rss_mb: Mapped[float | None] = mapped_column(Float)
    cpu_time_s: Mapped[float | None] = mapped_column(Float)


class JobStep(Base):
    """One job step of one attempt (an ``srun`` inside the job: sacct's ``123.0``), from sacct.

    Keyed by its attempt's natural key plus the step id, so a resync rewrites the same rows
    and a job's steps are read on the key's prefix. No foreign key to job_attempts: the
    attempt is written in the same transaction, and each checked key costs ingest (as on
    usage_monthly). PBS accounting has no steps, so PBS jobs have no rows here.
    """

    __tablename__ = "job_steps"

    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    array_index: Mapped[int] = mapped_column(primary_key=True)
    attempt: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    updated_at: Mapped[datetime] = mapped_column(UtcTime)
    name: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None]
    exit_signal: Mapped[int | None]
    start_at: Mapped[datetime | None] = mapped_column(UtcTime)
    end_at: Mapped[datetime | None] = mapped_column(UtcTime)
    elapsed_s: Mapped[int | None] = mapped_column(BigInteger)
    node_list: Mapped[str | None] = mapped_column(Text)
    alloc_cpus: Mapped[int | None]
    alloc_gpus: Mapped[int | None]
    tres: Mapped[str | None] = mapped_column(Text)
    max_rss_mb: Mapped[float | None] = mapped_column(Float)
    cpu_time_s: Mapped[float | None] = mapped_column(Float)


class UsageMonthly(Base):
    """What finished attempts used per cluster, calendar month (UTC) and group: sreport's
    rollup, so that reports over whole months read this instead of every attempt.

    Hours are split between months pro rata; jobs, waits and CPU efficiency count in the
    month an attempt started. Kept exact by hpcbridge.ledger.rollup, which recomputes the
    months each write touches; unfinished attempts are never here (they grow with time).
    The ids carry no foreign keys: they are copied from job_attempts, whose are checked, and
    on PostgreSQL checking them again took three quarters of a refresh.
    """

    __tablename__ = "usage_monthly"
    __table_args__ = (Index("ix_usage_monthly_cluster_month", "cluster_id", "month"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cluster_id: Mapped[int]
    month: Mapped[datetime] = mapped_column(UtcTime)
    account_id: Mapped[int | None]
    user_id: Mapped[int | None]
    partition: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    core_seconds: Mapped[int] = mapped_column(BigInteger)
    gpu_seconds: Mapped[int] = mapped_column(BigInteger)
    jobs: Mapped[int] = mapped_column(BigInteger)
    wait_s: Mapped[int] = mapped_column(BigInteger)
    waited_jobs: Mapped[int] = mapped_column(BigInteger)
    cpu_used_s: Mapped[float] = mapped_column(Float)
    cpu_available_s: Mapped[int] = mapped_column(BigInteger)


class UsageDirty(Base):
    """A cluster's month whose attempts were written since its rollup rows were computed.

    Marked in the transaction that writes the attempts, cleared in the one that recomputes
    the month: committed state is always rollup + dirty months = the attempts, even after a
    killed sync. Reports read dirty months from the attempts.
    """

    __tablename__ = "usage_dirty"

    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    month: Mapped[datetime] = mapped_column(UtcTime, primary_key=True)


class UsageLongest(Base):
    """An upper bound on the length of a cluster's rolled-up attempts: an attempt overlapping
    [a, b) started in [a - longest, b), a range the index on start_at reads quickly."""

    __tablename__ = "usage_longest"

    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    longest_s: Mapped[int] = mapped_column(BigInteger)


class SyncWatermark(Base):
    """How far a source of one cluster has been read: the next sync starts here, less overlap."""

    __tablename__ = "sync_watermarks"

    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    read_until: Mapped[datetime] = mapped_column(UtcTime)
    synced_at: Mapped[datetime] = mapped_column(UtcTime)


class Allocation(Base):
    """Core-hours and GPU-hours granted to an account for a period [starts, ends)."""

    __tablename__ = "allocations"
    __table_args__ = (UniqueConstraint("account_id", "starts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    starts: Mapped[datetime] = mapped_column(UtcTime)
    ends: Mapped[datetime] = mapped_column(UtcTime)
    core_hours: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)


class WorkflowState(Base):
    """A submitted workflow's record (hpcbridge.workflows.store) when it is kept in the ledger.

    The record is one JSON document, read and replaced whole as in the state-file store: the
    stages and their job ids are only ever used together, by ``workflow status`` and ``resume``.
    """

    __tablename__ = "workflows"

    workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    site: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcTime)
    updated_at: Mapped[datetime] = mapped_column(UtcTime)
    record: Mapped[str] = mapped_column(Text)


class PriorityChange(Base):
    """One queued job moved to another priority level: who, when, why, and by what ``cause``
    (``rerank`` of a campaign's scenario, or a project ``deadline`` approaching).

    The latest row of a job is its level as hpcbridge last set it, so the next rerank knows
    what it is changing from without asking the scheduler (which shows a QOS and a nice
    value, not the level they stand for), and a deadline that moves away can give back the
    level a job had before the deadline raised it.
    """

    __tablename__ = "priority_changes"
    __table_args__ = (Index("ix_priority_changes_cluster_job", "cluster", "job_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(UtcTime)
    changed_by: Mapped[str] = mapped_column(String(128))
    cluster: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str] = mapped_column(String(64))
    cause: Mapped[str] = mapped_column(String(16), server_default="rerank")
    campaign: Mapped[str | None] = mapped_column(String(255))  # with cause rerank
    scenario: Mapped[str | None] = mapped_column(String(255))
    account: Mapped[str | None] = mapped_column(String(128))  # with cause deadline
    old_level: Mapped[str | None] = mapped_column(String(64))
    new_level: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class ProjectDeadline(Base):
    """When an account's work must be done, as set through the API or ``priority deadline``
    (a deadline in the site config stands when the ledger has none for the account)."""

    __tablename__ = "project_deadlines"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    due: Mapped[datetime] = mapped_column(UtcTime)
    set_at: Mapped[datetime] = mapped_column(UtcTime)
    set_by: Mapped[str] = mapped_column(String(128))


class TrackedDeadline(Base):
    """A job or workflow submitted with a deadline: what was expected at submit, and once it
    is over, whether it met the deadline (the SLA report counts these per client)."""

    __tablename__ = "tracked_deadlines"
    __table_args__ = (UniqueConstraint("cluster", "kind", "ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # "job" or "workflow"
    ref: Mapped[str] = mapped_column(String(255))  # the job id or the workflow id
    name: Mapped[str] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(128))  # the account
    deadline: Mapped[datetime] = mapped_column(UtcTime)
    submitted_at: Mapped[datetime] = mapped_column(UtcTime)
    verdict: Mapped[str] = mapped_column(String(16))  # at submit
    expected_finish: Mapped[datetime] = mapped_column(UtcTime)  # at submit
    finished_at: Mapped[datetime | None] = mapped_column(UtcTime)
    outcome: Mapped[str | None] = mapped_column(String(16))  # "met", "missed"; None: not over
