"""Guards on what one GraphQL document may ask for, and caches for the ones asked again and again.

* **Depth** (strawberry's :class:`QueryDepthLimiter`): nested lists such as
  ``events { deliveries { event { deliveries … } } }`` stop at :data:`MAX_DEPTH`; introspection
  (GraphiQL) is not counted.
* **Size** (:class:`MaxTokensLimiter`, :class:`MaxAliasesLimiter`): a document is parsed only up
  to :data:`MAX_TOKENS` tokens, and may repeat a field under :data:`MAX_ALIASES` aliases at most.
* **Cost** (:class:`CostLimiter`, below): an estimate of how many values the answer can hold,
  refused above :data:`MAX_COST` before anything runs. Each field costs 1; a list field
  multiplies what is selected under it by its size argument (``limit``, ``first``, ``last``)
  or, without one, by :data:`DEFAULT_LIST_SIZE`. ``maxPoints`` bounds the *points* under a
  series, so the first list below it without its own size is multiplied by it. Variables and
  argument defaults are read, so ``limit: $n`` costs what ``$n`` is.
* **NUL** (:class:`NulRefuser`): text arguments and variables may not contain U+0000, which
  PostgreSQL's text cannot hold (the driver's error, SQL included, was the answer).
* **Caches** (:class:`ParserCache`, :class:`ValidationCache`): the dashboard sends the same few
  documents for every poll and every subscriber; each is parsed and validated once.

Refusals are ordinary GraphQL errors (HTTP 200 with ``errors``, or a subscription ``error``):
nothing runs, nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    Undefined,
    value_from_ast_untyped,
)
from graphql.language import BREAK, Visitor, visit
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as create_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as create_depth_rule

MAX_DEPTH: Final = 10
MAX_TOKENS: Final = 5000
MAX_ALIASES: Final = 30
MAX_COST: Final = 500_000
DEFAULT_LIST_SIZE: Final = 10
SIZE_ARGUMENTS: Final = ("limit", "first", "last")
POINTS_ARGUMENT: Final = "maxPoints"
CACHE_SIZE: Final = 512


class CostTooHigh(Exception):
    def __init__(self, cost: int, limit: int) -> None:
        super().__init__(
            f"Query cost {cost:,} exceeds the limit of {limit:,}: ask for fewer items "
            "(limit, maxPoints) or fewer nested lists"
        )
        self.cost = cost


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    limit: int

    def selection(
        self,
        parent: GraphQLNamedType | None,
        selection_set: SelectionSetNode | None,
        points: int | None,
        seen: frozenset[str],
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for node in selection_set.selections or ():
            if isinstance(node, FieldNode):
                total += self.field(parent, node, points, seen)
            elif isinstance(node, InlineFragmentNode):
                inner = self._type(node.type_condition.name.value) if node.type_condition else None
                total += self.selection(inner or parent, node.selection_set, points, seen)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:  # unknown or cyclic: validation says so
                    continue
                inner = self._type(fragment.type_condition.name.value)
                total += self.selection(inner, fragment.selection_set, points, seen | {name})
            if total > self.limit:
                raise CostTooHigh(total, self.limit)
        return total

    def field(
        self,
        parent: GraphQLNamedType | None,
        node: FieldNode,
        points: int | None,
        seen: frozenset[str],
    ) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0  # introspection, typename
        definition = _field(parent, name)
        if definition is None:
            return 1  # unknown: validation refuses it
        arguments = self._arguments(node, definition)
        field_type: Any = definition.type
        if isinstance(field_type, GraphQLNonNull):
            field_type = field_type.of_type
        factor = 1
        if isinstance(field_type, GraphQLList):
            size = next(
                (arguments[a] for a in SIZE_ARGUMENTS if isinstance(arguments.get(a), int)), None
            )
            if size is None and points is not None:
                size, points = points, None
            factor = max(1, size if size is not None else DEFAULT_LIST_SIZE)
        if isinstance(arguments.get(POINTS_ARGUMENT), int):
            points = max(1, arguments[POINTS_ARGUMENT])
        while isinstance(field_type, GraphQLList | GraphQLNonNull):
            field_type = field_type.of_type
        inner = self.selection(field_type, node.selection_set, points, seen)
        return 1 + factor * inner

    def _arguments(self, node: FieldNode, definition: GraphQLField) -> dict[str, Any]:
        values = {
            name: arg.default_value
            for name, arg in definition.args.items()
            if arg.default_value is not Undefined and arg.default_value is not None
        }
        for argument in node.arguments or ():
            try:
                values[argument.name.value] = value_from_ast_untyped(
                    argument.value, dict(self.variables)
                )
            except Exception:  # a malformed value: validation says so
                continue
        return values

    def _type(self, name: str) -> GraphQLNamedType | None:
        return self.schema.get_type(name)


def _field(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        found: GraphQLField | None = parent.fields.get(name)
        return found
    return None


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    limit: int = MAX_COST,
) -> int:
    """The estimated cost of the operation that would run; raise :class:`CostTooHigh` as soon
    as it passes ``limit`` (so a huge document is not walked to its end)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return 0  # none or ambiguous: execution refuses it with its own error
    operation = operations[0]
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]
    walk = _Walk(schema, fragments, variables or {}, limit)
    cost = walk.selection(root, operation.selection_set, None, frozenset())
    if cost > limit:
        raise CostTooHigh(cost, limit)
    return cost


class CostLimiter(SchemaExtension):
    """Refuse an operation whose :func:`query_cost` passes :data:`MAX_COST`. It runs in the
    validation step, after :class:`ValidationCache` (whose errors it keeps), because the cost
    depends on the variables and so cannot be cached with the document."""

    def __init__(self, max_cost: int = MAX_COST) -> None:
        self.max_cost = max_cost

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and not context.pre_execution_errors:
            try:
                query_cost(
                    context.schema._schema,
                    context.graphql_document,
                    context.variables,
                    context.operation_name,
                    self.max_cost,
                )
            except CostTooHigh as exc:
                context.pre_execution_errors = [
                    GraphQLError(str(exc), extensions={"code": "QUERY_TOO_COSTLY"})
                ]
        yield


NUL_MESSAGE: Final = "Text arguments may not contain the NUL character (U+0000)"


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


class _NulInDocument(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if "\x00" in node.value:
            self.found = True
            return BREAK
        return None


class NulRefuser(SchemaExtension):
    """Refuse text with NUL in the document or its variables: PostgreSQL's text cannot hold it,
    so a lookup such as ``device(id: "\\u0000")`` failed in the driver and answered the driver's
    message, SQL included. Refused like the other guards, before anything runs."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            visitor = _NulInDocument()
            visit(document, visitor)
            if visitor.found or _has_nul(context.variables):
                context.pre_execution_errors = [
                    GraphQLError(NUL_MESSAGE, extensions={"code": "BAD_USER_INPUT"})
                ]
        yield


#: strawberry's alias and depth limiters, built once: ``MaxAliasesLimiter``/``QueryDepthLimiter``
#: make new rule classes per operation, and the validation cache is keyed by the rules, so it
#: never hit (about 10 ms of validation on every dashboard request).
_SIZE_RULES = (
    create_aliases_rule(MAX_ALIASES),
    create_depth_rule(MAX_DEPTH, should_ignore=None),
)


def extensions() -> list[Callable[[], SchemaExtension]]:
    """The schema's guards as factories (a fresh instance per operation), in running order:
    the cost check reads what the validation cache decided."""
    return [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: AddValidationRules(list(_SIZE_RULES)),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        CostLimiter,
        NulRefuser,
    ]
