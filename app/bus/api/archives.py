"""Archives: CreateArchive, DescribeArchive, ListArchives, UpdateArchive, DeleteArchive."""

from __future__ import annotations

from app.aws.operations import AwsCall
from app.bus import archives
from app.bus.api.common import Answer, Params, clean, operation, page, paging, scope
from app.bus.arns import Scope
from app.bus.models import Archive


def _summary(scope: Scope, archive: Archive, stats: archives.ArchiveStats) -> Answer:
    return {
        "ArchiveName": archive.name,
        "EventSourceArn": scope.bus_arn(archive.bus_name),
        "State": archive.state,
        "RetentionDays": archive.retention_days,
        "SizeBytes": stats.size_bytes,
        "EventCount": stats.event_count,
        "CreationTime": archive.created_at,
    }


def _state(scope: Scope, archive: Archive) -> Answer:
    """CreateArchive's and UpdateArchive's shared answer."""
    return {
        "ArchiveArn": scope.archive_arn(archive.name),
        "State": archive.state,
        "CreationTime": archive.created_at,
    }


@operation("CreateArchive", write=True)
def create_archive_op(params: Params, call: AwsCall) -> Answer:
    """Archive the events of a bus (those matching ``EventPattern``, or all) from now on."""
    where = scope(call)
    with call.session() as session:
        archive = archives.create_archive(
            session,
            where,
            name=params["ArchiveName"],
            event_source_arn=params["EventSourceArn"],
            event_pattern=params.get("EventPattern"),
            description=params.get("Description"),
            retention_days=params.get("RetentionDays"),
        )
        return _state(where, archive)


@operation("DescribeArchive", write=False)
def describe_archive_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    with call.session() as session:
        archive = archives.get_archive(session, params["ArchiveName"])
        stats = archives.archive_stats(session, [archive.name])[archive.name]
        return clean(
            {
                "ArchiveArn": where.archive_arn(archive.name),
                **_summary(where, archive, stats),
                "Description": archive.description,
                "EventPattern": archive.event_pattern,
            }
        )


@operation("ListArchives", write=False)
def list_archives_op(params: Params, call: AwsCall) -> Answer:
    where = scope(call)
    limit, token = paging(params)
    with call.session() as session:
        found = archives.list_archives(
            session,
            where,
            name_prefix=params.get("NamePrefix"),
            event_source_arn=params.get("EventSourceArn"),
            state=params.get("State"),
            limit=limit,
            token=token,
        )
        stats = archives.archive_stats(session, [a.name for a in found.items])
        return page(found, "Archives", lambda a: _summary(where, a, stats[a.name]))


@operation("UpdateArchive", write=True)
def update_archive_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        archive = archives.update_archive(
            session,
            params["ArchiveName"],
            description=params.get("Description"),
            event_pattern=params.get("EventPattern"),
            retention_days=params.get("RetentionDays"),
        )
        return _state(scope(call), archive)


@operation("DeleteArchive", write=True)
def delete_archive_op(params: Params, call: AwsCall) -> Answer:
    with call.session() as session:
        archives.delete_archive(session, params["ArchiveName"])
    return {}
