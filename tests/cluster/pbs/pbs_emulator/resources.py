"""Resource requests: ``-l`` lists, ``select`` chunks, ``place``, and Resource_List totals.

The split follows real PBS: qsub checks the *syntax* of values it knows (a bad walltime never
reaches the server and uses up no job id), while the server refuses resources it does not
know (``Unknown resource Resource_List.nosuchres``) and requests above a queue's limits.
"""

from __future__ import annotations

from pbs_emulator import units

DURATIONS = {"walltime", "cput", "pcput", "soft_walltime", "min_walltime", "max_walltime"}
SIZES = {"mem", "vmem", "pmem", "pvmem", "file", "hbmem", "accelerator_memory"}
INTEGERS = {"ncpus", "ngpus", "nodect", "mpiprocs", "ompthreads", "naccelerators", "nmics"}
STRINGS = {"select", "place", "host", "vnode", "arch", "software", "preempt_targets"}
KNOWN = DURATIONS | SIZES | INTEGERS | STRINGS
PLACE_ARRANGEMENTS = {"free", "pack", "scatter", "vscatter"}
PLACE_SHARING = {"excl", "shared", "exclhost"}


class Chunk:
    """One select chunk: `count` copies of the same resource request."""

    __slots__ = ("count", "resources")

    def __init__(self, count: int, resources: list[tuple[str, str]]) -> None:
        self.count = count
        self.resources = resources

    def to_json(self) -> list[object]:
        return [self.count, self.resources]

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.resources:
            if key == name:
                return value
        return default

    @property
    def ncpus(self) -> int:
        return int(self.get("ncpus", "1") or 1)

    @property
    def mem_kb(self) -> int:
        value = self.get("mem")
        return (units.parse_size_kb(value) or 0) if value else 0

    @property
    def ngpus(self) -> int:
        return int(self.get("ngpus", "0") or 0)

    @property
    def mpiprocs(self) -> int:
        return int(self.get("mpiprocs", "1" if self.ncpus > 0 else "0") or 0)


def split_list(text: str) -> list[tuple[str, str]] | str:
    """``a=1,b=2`` as pairs, or the attribute name to blame when an item has no value."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            return f"Resource_List.{name or item}"
        pairs.append((name, value.strip()))
    return pairs


def value_error(name: str, value: str, prefix: str = "Resource_List") -> str | None:
    """The attribute to blame if `value` is not valid for the known resource `name`."""
    bad = f"{prefix}.{name}"
    if name in DURATIONS:
        return None if units.parse_duration(value) is not None else bad
    if name in SIZES:
        return None if units.parse_size_kb(value) is not None else bad
    if name in INTEGERS:
        return None if value.isdigit() else bad
    if name == "select":
        chunks = parse_select(value)
        return chunks if isinstance(chunks, str) else None
    if name == "place":
        return None if place_ok(value) else bad
    if name in STRINGS:
        return None if value else bad
    return None


def parse_select(spec: str) -> list[Chunk] | str:
    """The chunks of a select statement, or the attribute to blame for a syntax error."""
    chunks: list[Chunk] = []
    for part in spec.split("+"):
        pieces = part.split(":")
        count = 1
        if pieces and pieces[0].isdigit():
            count = int(pieces.pop(0))
        if count < 1 or not part:
            return "Resource_List.select"
        chunk = Chunk(count, [])
        for piece in pieces:
            name, sep, value = piece.partition("=")
            if not sep or not name or not value:
                return "Resource_List.select"
            error = value_error(name, value, prefix="select")
            if error:
                return error
            chunk.resources.append((name, value.lower() if name in SIZES else value))
        chunks.append(chunk)
    return chunks


def place_ok(value: str) -> bool:
    """Whether `value` is a valid place statement (arrangement[:sharing][:group=res])."""
    for part in value.split(":"):
        if part in PLACE_ARRANGEMENTS or part in PLACE_SHARING or part.startswith("group="):
            continue
        return False
    return bool(value)


def normalize(name: str, value: str) -> str:
    """How PBS stores a value: durations as HH:MM:SS, sizes in lower case."""
    if name in DURATIONS:
        return units.hms(units.parse_duration(value) or 0)
    if name in SIZES:
        return value.lower()
    return value


def build(requested: dict[str, str]) -> tuple[dict[str, str], list[Chunk]]:
    """Resource_List and the chunks to schedule for validated `requested` resources.

    Without a select statement PBS builds one from the job-wide ncpus/mem/ngpus and places
    the job with ``pack``; with one it sums the chunks and places ``free``.
    """
    resource_list = {name: normalize(name, value) for name, value in requested.items()}
    if "select" in requested:
        parsed = parse_select(requested["select"])
        assert not isinstance(parsed, str), "select must be validated before build()"
        chunks = parsed
        resource_list.setdefault("place", "free")
    else:
        chunk = Chunk(1, [("ncpus", requested.get("ncpus", "1"))])
        for name in ("mem", "ngpus"):
            if name in requested:
                chunk.resources.append((name, resource_list[name]))
        chunks = [chunk]
        resource_list["select"] = "1:" + ":".join(f"{k}={v}" for k, v in chunk.resources)
        resource_list.setdefault("place", "pack")
    resource_list["ncpus"] = str(sum(c.count * c.ncpus for c in chunks))
    resource_list["nodect"] = str(sum(c.count for c in chunks))
    if any(c.get("mem") for c in chunks):
        resource_list["mem"] = units.format_kb(sum(c.count * c.mem_kb for c in chunks))
    if any(c.get("ngpus") for c in chunks):
        resource_list["ngpus"] = str(sum(c.count * c.ngpus for c in chunks))
    return resource_list, chunks
