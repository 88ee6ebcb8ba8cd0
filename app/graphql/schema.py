"""The schema root: each domain contributes a query/mutation/subscription type merged here."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.tools import merge_types
from strawberry.types.unset import UnsetType

from app.auth import credential_from_headers
from app.graphql import iot, limits
from app.graphql.bus import BusMutation, BusQuery
from app.graphql.context import Context, get_context
from app.graphql.iot import IotMutation, IotQuery, IotSubscription
from app.graphql.queues import QueuesQuery
from app.graphql.runners import RunnersMutation, RunnersQuery
from app.graphql.scaling import ScalingMutation, ScalingQuery, ScalingSubscription
from app.graphql.schedules import SchedulesQuery
from app.graphql.system import SystemQuery
from app.graphql.workflows import WorkflowMutation, WorkflowQuery, WorkflowSubscription

Query = merge_types(
    "Query",
    (
        SystemQuery,
        BusQuery,
        ScalingQuery,
        QueuesQuery,
        SchedulesQuery,
        WorkflowQuery,
        IotQuery,
        RunnersQuery,
    ),
)
Mutation = merge_types(
    "Mutation", (BusMutation, ScalingMutation, WorkflowMutation, IotMutation, RunnersMutation)
)
Subscription = merge_types(
    "Subscription", (WorkflowSubscription, ScalingSubscription, IotSubscription)
)

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=limits.extensions(),
    config=StrawberryConfig(scalar_map=iot.SCALARS),
)


class SmokehouseGraphQLRouter(GraphQLRouter[Context, None]):
    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = {str(k).lower(): str(v) for k, v in (context.connection_params or {}).items()}
        key = context.keyring.authenticate(credential_from_headers(params))
        if key is None:
            raise ConnectionRejectionError({"reason": "missing or invalid session token"})
        context.key = key
        return None


def graphql_router() -> GraphQLRouter[Any, Any]:
    return SmokehouseGraphQLRouter(
        schema,
        context_getter=get_context,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        graphql_ide="graphiql",
    )
