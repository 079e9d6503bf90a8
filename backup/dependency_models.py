"""What a backup records about its schema's dependencies outside itself (see dependencies.py
and large_objects.py): plain models, importable from models.py and manifest.py."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExtensionDependency(BaseModel):
    name: str
    version: str
    schema_name: str


class OutsideObject(BaseModel):
    kind: str  # as pg_identify_object names it: type, domain, function, table, ...
    schema_name: str
    identity: str  # schema-qualified, e.g. auth.uid() or public.users


class OutsideForeignKey(BaseModel):
    """A foreign key of the tenant's into a table outside the backup."""

    name: str
    table: str  # the tenant's table, schema-qualified
    references: str  # the outside table
    definition: str  # pg_get_constraintdef


class LargeObjectColumn(BaseModel):
    table: str  # schema-qualified
    column: str


class LargeObjects(BaseModel):
    """The large objects the schema's oid/lo columns reference, appended to the artifact's
    stream after pg_dump's output as SQL (backup/large_objects.py); `offset` is where."""

    columns: list[LargeObjectColumn]
    count: int
    total_bytes: int
    digest: str  # sha256 over the sorted sha256 of every object's content
    offset: int | None = None  # byte offset in the decompressed artifact; None: not appended
    missing: list[str] = Field(default_factory=list)  # references to no object at dump time


class Dependencies(BaseModel):
    extensions: list[ExtensionDependency] = Field(default_factory=list)
    objects: list[OutsideObject] = Field(default_factory=list)
    foreign_keys: list[OutsideForeignKey] = Field(default_factory=list)
    # pg_dump's structure-only SQL of `objects` (no rows), for scratch databases.
    definitions: str = ""
    large_objects: LargeObjects | None = None

    @property
    def schemas(self) -> list[str]:
        """Schemas a restore needs to exist (the tenant's too, if an extension lives in it)."""
        names = {e.schema_name for e in self.extensions} | {o.schema_name for o in self.objects}
        return sorted(names)

    def extensions_in(self, schema: str) -> list[ExtensionDependency]:
        """Extensions installed in the tenant's schema itself: part of it, but pg_dump -n
        leaves them out; a restore creates them with the schema."""
        return [e for e in self.extensions if e.schema_name == schema]

    def describe(self) -> str:
        parts = []
        if self.extensions:
            parts.append(
                "extensions "
                + ", ".join(f"{e.name} {e.version} ({e.schema_name})" for e in self.extensions)
            )
        if self.objects:
            parts.append(
                "outside objects " + ", ".join(f"{o.kind} {o.identity}" for o in self.objects)
            )
        if self.large_objects and self.large_objects.count:
            lo = self.large_objects
            parts.append(f"{lo.count} large objects ({lo.total_bytes:,} bytes)")
        return "; ".join(parts) if parts else "none outside the schema"

    def summary(self) -> Dependencies:
        """Without the definitions' SQL: for results and workflow history."""
        return self.model_copy(update={"definitions": ""})
