"""``modelyard models``: list, show, tag, delete and clean up registered models."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, parse_pairs, print_json, settings
from modelyard.registry import ModelRef, Registry

app = typer.Typer(help="Browse and manage registered models.", no_args_is_help=True)


def _registry(ctx: typer.Context) -> Registry:
    from modelyard.api import open_registry

    return open_registry(settings(ctx))


@app.command("list")
def list_models(
    ctx: typer.Context,
    include_deleted: bool = typer.Option(False, "--all", help="Include deleted models."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every model with its newest version and aliases."""
    found = _registry(ctx).list_models(include_deleted=include_deleted)
    if as_json:
        print_json([model.as_dict() for model in found])
        return
    if not found:
        console.print("no models yet: register one with `modelyard register`")
        return
    table = Table("name", "latest", "versions", "aliases", "created", "description")
    for model in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(model.aliases.items()))
        name = model.name + (" (deleted)" if model.deleted_at else "")
        table.add_row(
            name,
            str(model.latest_version or "-"),
            str(model.versions),
            aliases,
            model.created_at[:19],
            model.description,
        )
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME:VERSION.", show_default=False),
    as_json: bool = JSON_OPTION,
) -> None:
    """A model and its versions, or one version in full."""
    registry = _registry(ctx)
    parsed = ModelRef.parse(ref)
    if parsed.version is None and parsed.alias is None:
        model = registry.get_model(parsed.name)
        versions = registry.list_versions(parsed.name)
        if as_json:
            print_json({**model.as_dict(), "versions": [v.as_dict() for v in versions]})
            return
        console.print(f"{model.name}: {model.description or '(no description)'}", markup=False)
        table = Table("version", "flavor", "task", "aliases", "tags", "created", "by")
        for v in versions:
            table.add_row(
                str(v.version),
                v.flavor,
                v.task,
                ", ".join(v.aliases),
                ", ".join(f"{k}={val}" for k, val in v.tags.items()),
                v.created_at[:19],
                v.created_by,
            )
        console.print(table)
        return
    version = registry.get_version(parsed)
    if as_json:
        print_json(version.as_dict(with_manifest=True))
        return
    _print_version(version.as_dict(with_manifest=True))


def _print_version(data: dict[str, Any]) -> None:
    manifest = data["manifest"]
    signature = manifest["signature"]
    prov = manifest["provenance"]
    lines = [
        f"{data['name']}:{data['version']}  {data['flavor']} {data['task']}",
        f"aliases:      {', '.join(data['aliases']) or '-'}",
        f"tags:         {', '.join(f'{k}={v}' for k, v in data['tags'].items()) or '-'}",
        f"created:      {data['created_at']} by {data['created_by']}",
        f"artifact:     {data['artifact_uri']}",
        "inputs:       " + ", ".join(
            f"{s['name']}:{s['datatype']}" for s in signature["inputs"][:12]
        ) + (f" … ({len(signature['inputs'])} in all)" if len(signature["inputs"]) > 12 else ""),
        "outputs:      " + ", ".join(
            f"{s['name']}:{s['datatype']}{s['shape']}" for s in signature["outputs"]
        ),
    ]
    if manifest.get("classes") is not None:
        lines.append(f"classes:      {manifest['classes']}")
    if manifest.get("reference"):
        ref = manifest["reference"]
        lines.append(
            f"reference:    {ref['rows']} rows, labels {ref['labels_column'] or '-'}"
        )
    lines.append(f"data:         {prov.get('data_uri') or 'in memory'} "
                 f"sha256 {str(prov.get('data_sha256'))[:12]}")
    if prov.get("code_version"):
        dirty = " (uncommitted changes)" if prov.get("code_dirty") else ""
        lines.append(f"code:         {prov['code_version'][:12]}{dirty}")
    if prov.get("parent"):
        lines.append(f"parent:       {prov['parent']}")
    if prov.get("metrics"):
        lines.append(
            "metrics:      " + ", ".join(f"{k}={v:.4g}" for k, v in prov["metrics"].items())
        )
    console.print("\n".join(lines), markup=False)


@app.command("tag")
def tag(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION or NAME@ALIAS.", show_default=False),
    pairs: list[str] = typer.Argument(..., help="key=value pairs.", show_default=False),
) -> None:
    """Set tags on a version (e.g. stage=staging)."""
    registry = _registry(ctx)
    parsed = ModelRef.parse(ref)
    for key, value in parse_pairs(pairs, "tag").items():
        registry.set_tag(parsed, key, value)
    console.print(f"tagged {registry.get_version(parsed).ref}")


@app.command("untag")
def untag(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION or NAME@ALIAS.", show_default=False),
    keys: list[str] = typer.Argument(..., help="Tag keys to remove.", show_default=False),
) -> None:
    """Remove tags from a version."""
    registry = _registry(ctx)
    parsed = ModelRef.parse(ref)
    for key in keys:
        registry.remove_tag(parsed, key)
    console.print(f"untagged {', '.join(keys)}")


@app.command("delete")
def delete(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME (all versions) or NAME:VERSION.", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a model or one version (soft: hidden from use, kept in the audit log)."""
    registry = _registry(ctx)
    parsed = ModelRef.parse(ref)
    if parsed.alias:
        parsed = ModelRef(parsed.name, version=registry.get_version(parsed).version)
    what = f"version {parsed}" if parsed.version else f"model {parsed.name} and all its versions"
    if not yes and not typer.confirm(f"delete {what}?", default=False):
        raise typer.Exit(1)
    if parsed.version:
        registry.delete_version(parsed.name, parsed.version)
    else:
        registry.delete_model(parsed.name)
    console.print(f"deleted {what}")


@app.command("gc")
def gc(
    ctx: typer.Context,
    min_age: float = typer.Option(
        3600.0, "--min-age", help="Only folders untouched for this many seconds."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List, do not remove."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove artifact folders left by registrations that died half-way."""
    registry = _registry(ctx)
    found = registry.orphans(min_age) if dry_run else registry.remove_orphans(min_age)
    if as_json:
        print_json({"removed": [] if dry_run else found, "orphans": found})
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {len(found)} orphaned folder(s)")
    for uri in found:
        console.print(f"  {uri}", markup=False)
