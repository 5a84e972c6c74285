"""Publishing the DuckDB warehouse so that readers never wait and never see half-built marts.

DuckDB lets one process write a database file, and a reader cannot open a file a writer holds.
So dbt never writes the file readers open:

1. a build gets a new file, `builds/<build id>.duckdb.building`, holding only the published
   tables of the incremental models (they carry on from them);
2. dbt builds into that file; the runner stamps it (table `warehouse_build`), checks it opens
   read-only with every mart in it, and seals it: renamed to `builds/<build id>.duckdb`, the
   only name a build is kept, listed or published under;
3. publishing points `warehouse.duckdb` at it: a fresh hard link renamed over the old name, one
   atomic `rename(2)`.

A reader that opened the previous version keeps reading it (an open file outlives its name on
POSIX), so a query in flight finishes on the version it started on; the next connection opens
the new one. The last `KEEP_BUILDS` builds stay in `builds/`; `publish(build_id)` points the
warehouse back at any of them. A failed build is never published and is deleted; one whose
process was killed stays `.building` (never listed, so never published) until the next build,
which runs under the same lock, deletes it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

KEEP_BUILDS = 3
CURRENT = "warehouse.duckdb"
UNSEALED = ".building"  # the suffix of a build that is not complete yet


@dataclass(frozen=True)
class Build:
    build_id: str
    path: Path


class WarehouseError(RuntimeError):
    """The warehouse cannot be built or published as asked."""


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per warehouse directory: the second waits (readers never do)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Warehouse:
    """The published warehouse file and its builds under one directory (WAREHOUSE_PATH)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.builds_dir = self.root / "builds"

    @property
    def current(self) -> Path:
        """The file readers open (read-only): always a complete, published build."""
        return self.root / CURRENT

    def builds(self) -> list[Build]:
        """Builds kept on disk, oldest first (build ids sort by time)."""
        if not self.builds_dir.is_dir():
            return []
        files = sorted(self.builds_dir.glob("*.duckdb"))
        return [Build(f.stem, f) for f in files]

    def published(self) -> Build | None:
        """The build `warehouse.duckdb` points at (same file), None before the first publish."""
        if not self.current.exists():
            return None
        current = self.current.stat()
        for build in self.builds():
            if os.path.samestat(build.path.stat(), current):
                return build
        return Build("unknown", self.current)

    def new_build(self, carry: list[tuple[str, str]] = ()) -> Build:
        """A file to build into, holding the published warehouse's `carry` tables ((schema,
        table) pairs: what incremental models carry on from) and nothing else, so dropped
        models and the space of replaced tables do not pile up from build to build.

        Called under the build lock: an unsealed build left on disk belongs to a build process
        that died (killed, out of memory), and is deleted here."""
        self.builds_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.builds_dir.glob(f"*.duckdb{UNSEALED}*"):
            leftover.unlink(missing_ok=True)
        build_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        build = Build(build_id, self.builds_dir / f"{build_id}.duckdb{UNSEALED}")
        if self.current.exists() and carry:
            with duckdb.connect(str(build.path)) as con:
                con.execute(f"ATTACH '{self.current}' AS published (READ_ONLY)")
                present = set(
                    con.execute(
                        "SELECT schema_name, table_name FROM duckdb_tables() "
                        "WHERE database_name = 'published'"
                    ).fetchall()
                )
                for schema, table in carry:
                    if (schema, table) in present:
                        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                        con.execute(
                            f'CREATE TABLE "{schema}"."{table}" AS '
                            f'FROM published."{schema}"."{table}"'
                        )
                con.execute("DETACH published")
        return build

    def stamp(self, build: Build, **facts: str) -> None:
        """Record the build id (and `facts`, e.g. the gold versions read) inside the build, so
        a reader can tell which version it is querying."""
        with duckdb.connect(str(build.path)) as con:
            con.execute(
                "CREATE OR REPLACE TABLE warehouse_build "
                "(build_id VARCHAR, built_at TIMESTAMPTZ, fact VARCHAR, value VARCHAR)"
            )
            rows = [(k, str(v)) for k, v in sorted(facts.items())] or [("", "")]
            con.executemany(
                "INSERT INTO warehouse_build VALUES (?, now(), ?, ?)",
                [(build.build_id, k, v) for k, v in rows],
            )
            con.execute("CHECKPOINT")

    def check(self, build: Build, tables: list[str]) -> None:
        """The build opens read-only and holds every table in `tables`."""
        with duckdb.connect(str(build.path), read_only=True) as con:
            rows = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        present = {r[0] for r in rows}
        missing = sorted(set(tables) - present)
        if missing:
            raise WarehouseError(f"build {build.build_id} lacks {', '.join(missing)}")

    def seal(self, build: Build) -> Build:
        """A complete, checked build under its kept name (before that, nothing lists it)."""
        if not build.path.name.endswith(UNSEALED):
            return build
        sealed = Build(build.build_id, build.path.with_name(build.path.name[: -len(UNSEALED)]))
        os.replace(build.path, sealed.path)
        return sealed

    def publish(self, build_id: str) -> Build:
        """Point `warehouse.duckdb` at a kept build, atomically."""
        build = next((b for b in self.builds() if b.build_id == build_id), None)
        if build is None:
            kept = ", ".join(b.build_id for b in self.builds()) or "none"
            raise WarehouseError(f"no build {build_id!r} in {self.builds_dir} (kept: {kept})")
        link = self.root / f".{CURRENT}.{build_id}"
        link.unlink(missing_ok=True)
        os.link(build.path, link)
        os.replace(link, self.current)
        return build

    def discard(self, build: Build) -> None:
        """Delete a build that failed (it was never published)."""
        for path in (build.path, build.path.with_name(build.path.name + ".wal")):
            path.unlink(missing_ok=True)

    def prune(self, keep: int = KEEP_BUILDS) -> list[str]:
        """Delete all but the newest `keep` builds (never the published one); their ids.

        A reader still holding a deleted build keeps reading it until it closes it."""
        published = self.published()
        builds = self.builds()
        removed = []
        for build in builds[: max(len(builds) - keep, 0)]:
            if published is None or build.build_id != published.build_id:
                self.discard(build)
                removed.append(build.build_id)
        return removed

    def rebuild(
        self,
        fill: Callable[[Build], dict[str, str]],
        tables: Iterable[str],
        keep: int = KEEP_BUILDS,
    ) -> Build:
        """One whole build under the lock: a new file, filled by `fill` (which returns the
        facts to stamp), stamped, checked to hold `tables`, published, old builds pruned. If
        anything fails, nothing is published and the build is deleted."""
        with build_lock(self.root):
            build = self.new_build()
            try:
                facts = fill(build)
                self.stamp(build, **facts)
                self.check(build, [*tables, "warehouse_build"])
                build = self.seal(build)
                self.publish(build.build_id)
            except BaseException:
                self.discard(build)
                raise
            self.prune(keep=keep)
        return build
